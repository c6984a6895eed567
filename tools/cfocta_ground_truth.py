"""Control-point ground truth for the CF_OCTA_dev eyes, made the annotators' way, and its export.

``propose``: per eye, the OCTA field is placed on the whole fundus photo by a brute-force search
(scale x rotation x position, normalised cross-correlation of the eye's artery/vein annotation,
drawn in OCTA space, against the photo's vessel map; independent of every matcher of the
pipeline). Vessel junctions of the annotation's skeleton, spread over the field, are the
candidate points; each partner is snapped onto the photo with ``core.point_snap`` (the app's
snap), and points more than ``INLIER_PX`` off the eye's affine fit are excluded. The points go
into the app's document and are saved as its annotation file, with two pictures per eye to judge
by eye: the annotation's centre lines warped onto the photo (``_overlay.png``) and every point's
zoomed photo and OCTA patches with crosshairs (``_check.png``).

``export``: the reviewed annotations (points excluded in review are dropped) become FIRE-format
control-point files and a ``pairs.csv`` for ``retreg evaluate --pairs``: each eye's two OCTA
slabs against the whole photo and against clips of it (``CLIPS``: the clinic's square 1.5x the
OCTA field centred on it, resampled to 512 px like ``_cf_clip_512``, and a wider off-centre one).
Errors stay in photo pixels.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
from skimage.morphology import skeletonize

from retreg.core.annotations import load_annotation, save_annotation, write_fire_points
from retreg.core.disc import locate_disc
from retreg.core.geometry import map_points
from retreg.core.io import read_image
from retreg.core.modality import prepare
from retreg.core.pipeline import estimate_from_points
from retreg.core.point_snap import snap_partner
from retreg.core.types import Mode
from retreg.gui.document import Document

FIELD_PX = {"3x3": 440, "6x6": 760}  # the data README's OCTA field width in photo px
SLABS = ("C_optic_nerve_head", "B_RPC")
# clips: name -> (side / OCTA field, offset of the clip centre from the field's, in fields);
# "clip" is the clinic's clip, "clip2x" a wider, off-centre one (the field covers half of it)
CLIPS = {"clip": (1.5, (0.0, 0.0)), "clip2x": (2.0, (0.12, -0.08))}
CLIP_SIDE = 512
DATA_FROM_CSV = "../../../../shared/data/CF_OCTA_dev"  # benchmarks/data/cfocta_dev -> ../shared
SEARCH_PX = 2.0  # photo px per pixel of the coarse search
INLIER_PX = 4.0  # a snapped point further than this from the eye's affine fit is excluded


def eyes(root: Path) -> list[tuple[str, str]]:
    return [(f, p.stem) for f in sorted(FIELD_PX) for p in sorted((root / f / "B_Fundus").glob("*.jpg"))]


def _vessel_mask(av_rgb: np.ndarray) -> np.ndarray:
    """The artery (red) / vein (blue) annotation as one binary vessel mask."""
    return (av_rgb.max(axis=2) > 127)


def coarse_placement(cf: np.ndarray, av: np.ndarray, field_px: float) -> np.ndarray:
    """3x3 similarity OCTA px -> photo px that best correlates the annotation with the photo's
    vessel map around its optic disc (the OCTA scans are disc-centred)."""
    cx, cy = locate_disc(cf)
    h, w = cf.shape[:2]
    prep = prepare(cf, "cf", round(max(h, w) / SEARCH_PX))
    pitch = float(np.mean(prep.scale))  # photo px per search px
    half = field_px * 1.1 / pitch
    x0, y0 = int(max(0, cx / pitch - half)), int(max(0, cy / pitch - half))
    region = prep.vessels[y0:int(cy / pitch + half), x0:int(cx / pitch + half)]
    mask = cv2.GaussianBlur(_vessel_mask(av).astype(np.float32), (0, 0), 2.0)
    n = av.shape[0]
    best = (-2.0, None)
    nominal = field_px / n
    for s in nominal * np.exp(np.linspace(np.log(0.75), np.log(1.33), 15)):
        side = int(round(n * s / pitch))
        base = cv2.resize(mask, (side, side), interpolation=cv2.INTER_AREA)
        for deg in np.arange(-15, 15.1, 2.5):
            rot = cv2.getRotationMatrix2D((side / 2, side / 2), deg, 1.0)
            tmpl = cv2.warpAffine(base, rot, (side, side))
            if tmpl.shape[0] >= region.shape[0] or tmpl.shape[1] >= region.shape[1]:
                continue
            ncc = cv2.matchTemplate(region, tmpl, cv2.TM_CCOEFF_NORMED)
            _, v, _, (ix, iy) = cv2.minMaxLoc(ncc)
            if v > best[0]:
                best = (v, (s, deg, ix + x0, iy + y0, side))
    s, deg, ix, iy, side = best[1]
    # OCTA px -> template px (scale) -> rotated template -> search px -> photo px
    to_tmpl = np.diag([side / n, side / n, 1.0])
    rot = np.vstack([cv2.getRotationMatrix2D((side / 2, side / 2), deg, 1.0), [0, 0, 1]])
    to_photo = np.array([[pitch, 0, ix * pitch], [0, pitch, iy * pitch], [0, 0, 1]])
    return to_photo @ rot @ to_tmpl


def junctions(av: np.ndarray, grid: int = 6, per_cell: int = 3, min_gap: float = 10.0
              ) -> np.ndarray:
    """(N, 2) OCTA px: branch and crossing points of the annotation's skeleton, up to
    ``per_cell`` per cell of a grid x grid tiling (well spread), ``min_gap`` px apart."""
    skel = skeletonize(_vessel_mask(av))
    nb = cv2.filter2D(skel.astype(np.uint8), -1, np.ones((3, 3), np.float32)) - skel
    ys, xs = np.nonzero(skel & (nb >= 3))
    n = av.shape[0]
    margin = n * 0.06
    keep = (xs > margin) & (xs < n - margin) & (ys > margin) & (ys < n - margin)
    xs, ys = xs[keep].astype(np.float64), ys[keep].astype(np.float64)
    pts: list[tuple[float, float]] = []
    cell = n / grid
    for gy in range(grid):
        for gx in range(grid):
            inside = (xs // cell == gx) & (ys // cell == gy)
            centre = np.array([(gx + 0.5) * cell, (gy + 0.5) * cell])
            taken = 0
            for i in np.argsort(np.hypot(xs - centre[0], ys - centre[1])):
                if taken == per_cell or not inside[i]:
                    continue
                if all(np.hypot(xs[i] - px, ys[i] - py) >= min_gap for px, py in pts):
                    pts.append((xs[i], ys[i]))
                    taken += 1
    return np.array(pts, np.float64).reshape(-1, 2)


def centreline_overlay(cf: np.ndarray, av: np.ndarray, matrix: np.ndarray, pairs) -> np.ndarray:
    """The annotation's centre lines (yellow) warped onto the photo's green channel over the
    OCTA field, with the points numbered: a misfit of a few px shows as lines beside vessels."""
    green = cv2.createCLAHE(3.0, (8, 8)).apply(np.ascontiguousarray(cf[:, :, 1]))
    n = av.shape[0]
    corners = map_points(matrix, np.array([[0, 0], [n, 0], [n, n], [0, n]], np.float64))
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 20
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 20
    x0, y0 = max(0, x0), max(0, y0)
    skel = skeletonize(_vessel_mask(av)).astype(np.uint8)
    h, w = green.shape
    lines = cv2.warpPerspective(cv2.dilate(skel, np.ones((2, 2), np.uint8)) * 255, matrix,
                                (w, h), flags=cv2.INTER_NEAREST)
    rgb = cv2.cvtColor(green, cv2.COLOR_GRAY2RGB)
    rgb[lines > 0] = (255, 220, 0)
    crop = rgb[y0:y1, x0:x1]
    f = 900 / max(crop.shape[:2])
    crop = cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    for p in pairs:
        x, y = (p.fixed[0] - x0) * f, (p.fixed[1] - y0) * f
        colour = (0, 255, 0) if p.include else (255, 0, 0)
        cv2.circle(crop, (int(x), int(y)), 6, colour, 1)
        cv2.putText(crop, str(p.id), (int(x) + 7, int(y) - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    colour, 1)
    return crop


def _patch(img: np.ndarray, xy, half: int, out: int) -> np.ndarray:
    x, y = int(round(xy[0])), int(round(xy[1]))
    pad = cv2.copyMakeBorder(img, half, half, half, half, cv2.BORDER_CONSTANT)
    p = pad[y:y + 2 * half + 1, x:x + 2 * half + 1]
    p = cv2.resize(p, (out, out), interpolation=cv2.INTER_CUBIC)
    if p.ndim == 2:
        p = cv2.cvtColor(p, cv2.COLOR_GRAY2RGB)
    c = out // 2
    cv2.line(p, (c - 12, c), (c - 4, c), (255, 255, 0), 1)
    cv2.line(p, (c + 4, c), (c + 12, c), (255, 255, 0), 1)
    cv2.line(p, (c, c - 12), (c, c - 4), (255, 255, 0), 1)
    cv2.line(p, (c, c + 4), (c, c + 12), (255, 255, 0), 1)
    return p


def check_sheet(cf: np.ndarray, octa: np.ndarray, av: np.ndarray, pairs, px_per_octa: float
                ) -> np.ndarray:
    """Per point: photo (CLAHE green), OCTA, annotation patches of the same physical size."""
    green = cv2.createCLAHE(3.0, (8, 8)).apply(np.ascontiguousarray(cf[:, :, 1]))
    half_cf = 40
    half_oc = max(4, int(round(half_cf / px_per_octa)))
    rows = []
    for p in pairs:
        tiles = [_patch(green, p.fixed, half_cf, 200), _patch(octa, p.moving, half_oc, 200),
                 _patch(av, p.moving, half_oc, 200)]
        row = np.hstack(tiles)
        cv2.putText(row, f"#{p.id}", (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 80, 80), 2)
        rows.append(row)
    cols = 2
    while len(rows) % cols:
        rows.append(np.zeros_like(rows[0]))
    return np.vstack([np.hstack(rows[i:i + cols]) for i in range(0, len(rows), cols)])


def propose(root: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for field, eye in eyes(root):
        cf_path = root / field / "B_Fundus" / f"{eye}.jpg"
        octa_path = root / field / "A_OCTA" / "B_RPC" / f"{eye}.jpg"
        cf, octa = read_image(cf_path), read_image(octa_path)
        av = read_image(root / field / "C_Annotation" / f"{eye}.tif")
        start = coarse_placement(cf, av, FIELD_PX[field])
        fixed = prepare(cf, "cf", int(max(cf.shape[:2]) * 0.95))
        moving = prepare(_vessel_mask(av).astype(np.uint8) * 255, "octa",
                         round(av.shape[0] * np.sqrt(abs(np.linalg.det(start[:2, :2])))))
        doc = Document()
        doc.set_images(cf_path, octa_path, cf, octa, Mode("cfocta"), "affine")
        refused = []
        for xy in junctions(av):
            snap = snap_partner(fixed, moving, tuple(xy), start, patch_px=48, search_px=24,
                                min_ncc=0.35)
            if snap.ok:
                doc.add_pair(snap.fixed_xy, tuple(xy))
            else:
                refused.append((xy.tolist(), snap.reason))
        fit = estimate_from_points(*doc.included_points(), "affine", threshold_px=INLIER_PX)
        if fit.matrix is not None:
            doc.set_included([p.id for p, ok in zip(doc.pairs, fit.inliers) if not ok], False)
        name = f"{field}_{eye}"
        overlay = centreline_overlay(cf, av, fit.matrix if fit.matrix is not None else start,
                                     doc.pairs)
        cv2.imwrite(str(out / f"{name}_overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        ann = doc.to_annotation()
        for ref in (ann.fixed, ann.moving):  # relative to the file, as the app resolves them
            ref.path = os.path.relpath(Path(ref.path).resolve(), out.resolve())
        save_annotation(out / f"{name}.retreg.json", ann)
        scale = float(np.sqrt(abs(np.linalg.det(start[:2, :2]))))
        sheet = check_sheet(cf, octa, av, doc.pairs, scale)
        cv2.imwrite(str(out / f"{name}_check.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        _, med = doc.inlier_residual_summary()
        print(f"{name}: {len(doc.pairs)} points, {len(refused)} refused, "
              f"start scale {scale:.3f}, median residual {med}")


def clip_box(moving_shape, fixed_shape, matrix: np.ndarray, margin: float,
             offset: tuple[float, float]) -> tuple[int, int, int]:
    """(x0, y0, side): the square ``margin`` x the OCTA field, its centre ``offset`` fields
    from the field's, inside the photo."""
    h, w = moving_shape[:2]
    corners = map_points(matrix, np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64))
    field = float(np.mean(np.ptp(corners, axis=0)))
    centre = corners.mean(axis=0) + field * np.asarray(offset)
    side = int(min(round(margin * field), *fixed_shape[:2]))
    x0 = int(np.clip(round(centre[0] - side / 2), 0, fixed_shape[1] - side))
    y0 = int(np.clip(round(centre[1] - side / 2), 0, fixed_shape[0] - side))
    return x0, y0, side


def export(root: Path, reviewed: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for field, eye in eyes(root):
        name = f"{field}_{eye}"
        ann = load_annotation(reviewed / f"{name}.retreg.json")
        kept = [p for p in ann.points if p.include]
        if len(kept) < 6:
            raise SystemExit(f"{name}: only {len(kept)} reviewed points (need >= 6)")
        write_fire_points(out / f"{name}.txt", kept)
        fixed_pts, moving_pts = ann.included()
        est = estimate_from_points(fixed_pts, moving_pts, "affine", threshold_px=1e9)
        boxes = {name: clip_box(ann.moving.shape, ann.fixed.shape, est.matrix, *how)
                 for name, how in CLIPS.items()}
        for slab in SLABS:
            moving = f"{DATA_FROM_CSV}/{field}/A_OCTA/{slab}/{eye}.jpg"
            fixed = f"{DATA_FROM_CSV}/{field}/B_Fundus/{eye}.jpg"
            rows.append((fixed, moving, f"{name}.txt", f"whole-{field}", ""))
            for clip, (x0, y0, side) in boxes.items():
                rows.append((fixed, moving, f"{name}.txt", f"{clip}-{field}",
                             f"{x0} {y0} {side} {CLIP_SIDE}"))
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(("fixed", "moving", "gt", "category", "fixed_clip"))
    wr.writerows(rows)
    (out / "pairs.csv").write_text(buf.getvalue())
    meta = {clip: f"square {m}x the OCTA field, centre offset {off} fields, resampled to {CLIP_SIDE}"
            for clip, (m, off) in CLIPS.items()}
    (out / "README.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {len(rows)} pairs to {out / 'pairs.csv'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("propose")
    p.add_argument("--data", type=Path, default=Path("../shared/data/CF_OCTA_dev"))
    p.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("export")
    e.add_argument("--data", type=Path, default=Path("../shared/data/CF_OCTA_dev"))
    e.add_argument("--reviewed", type=Path, required=True)
    e.add_argument("--out", type=Path, default=Path("benchmarks/data/cfocta_dev"))
    a = ap.parse_args()
    if a.cmd == "propose":
        propose(a.data, a.out)
    else:
        export(a.data, a.reviewed, a.out)


if __name__ == "__main__":
    main()
