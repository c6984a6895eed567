"""Register every eye of ``CF_OCTA_dev`` in the ``cfocta`` mode and draw a contact sheet.

A picture to look at, not a measurement: the control points for these eyes are in
``benchmarks/data/cfocta_dev/`` (``retreg evaluate --pairs``). Per eye the
disc-centred CF clip, the OCTA, the two-colour (CF magenta, OCTA green) and checkerboard overlays
after registration, and the OCTA's vessel centre lines drawn on the CF's contrast-enhanced green
channel. The last is the one to judge by: CF vessels are dark and OCTA vessels bright, so the
two-colour view is dominated by the disc, while a centre line either lies in a dark CF vessel or
beside it. Labels give the fitted rotation and the OCTA field's width in photo pixels, because a radial
vessel pattern around the disc can look aligned under a wrong rotation.

The clip side follows the data's README (the OCTA field spans about 440 px of a 3x3 eye's
fundus, 760 px of a 6x6 one) times a margin, since the disc estimate and the field's position
are approximate. Per-eye results (status, inliers, matrix onto the full photo, rotation, field
width) go to ``--json`` with the run's provenance.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from skimage.morphology import skeletonize

from retreg.core.disc import clip_around_disc
from retreg.core.io import read_image, write_image
from retreg.core.matchers import get_matcher
from retreg.core.overlays import checkerboard, two_colour
from retreg.core.pipeline import register
from retreg.core.provenance import run_record
from retreg.core.warp import warp_moving

FIELD_PX = {"3x3": 440, "6x6": 760}
SLABS = ("C_optic_nerve_head", "B_RPC")
TILE = 256


def _tile(img: np.ndarray) -> np.ndarray:
    rgb = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.resize(rgb.astype(np.uint8), (TILE, TILE), interpolation=cv2.INTER_AREA)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    out = tile.copy()
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _centre_lines_on_cf(clip: np.ndarray, warped_octa: np.ndarray) -> np.ndarray:
    """The warped OCTA's larger vessels as 1-px centre lines (green) on the CF's green channel."""
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8))
    out = cv2.cvtColor(clahe.apply(np.ascontiguousarray(clip[:, :, 1])), cv2.COLOR_GRAY2RGB)
    octa = warped_octa if warped_octa.ndim == 2 else cv2.cvtColor(warped_octa, cv2.COLOR_RGB2GRAY)
    smooth = cv2.GaussianBlur(octa.astype(np.float32), (0, 0), 3)
    inside = octa > 0
    if inside.any():
        lines = skeletonize(smooth > np.percentile(smooth[inside], 88)) & inside
        out[cv2.dilate(lines.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] = (0, 255, 0)
    return out


def _similarity_params(matrix: np.ndarray) -> tuple[float, float]:
    """(rotation in degrees, scale) of the linear part of a moving -> fixed matrix."""
    a, b = matrix[0, 0], matrix[1, 0]
    return float(np.degrees(np.arctan2(b, a))), float(np.hypot(a, b))


def register_eye(root: Path, field: str, eye: str, matcher, margin: float, transform: str):
    """Best of the two OCTA slabs (by inliers) for one eye: (row tiles, result dict)."""
    cf = read_image(root / field / "B_Fundus" / f"{eye}.jpg")
    clip, clip_to_full = clip_around_disc(cf, int(FIELD_PX[field] * margin))
    best = None
    for slab in SLABS:
        path = root / field / "A_OCTA" / slab / f"{eye}.jpg"
        if not path.is_file():
            continue
        octa = read_image(path)
        res = register(clip, octa, "cfocta", matcher=matcher, transform=transform)
        if best is None or (res.ok, res.n_inliers) > (best[1].ok, best[1].n_inliers):
            best = (slab, res, octa)
    slab, res, octa = best
    tiles = [_label(_tile(clip), f"{field}/{eye} CF clip"), _label(_tile(octa), f"OCTA {slab[2:]}")]
    rotation = field_px = None
    if res.ok:
        to_photo = clip_to_full @ res.matrix
        rotation, scale = _similarity_params(to_photo)
        field_px = scale * octa.shape[1]
        warped = warp_moving(octa, res.matrix, clip.shape)
        tiles += [_label(_tile(two_colour(clip, warped)), f"two-colour, {res.n_inliers} inliers"),
                  _label(_tile(checkerboard(clip, warped, tile=64)), "checkerboard"),
                  _label(_tile(_centre_lines_on_cf(clip, warped)),
                         f"rot {round(rotation)} deg, field {round(field_px)} px")]
    else:
        blank = np.zeros((TILE, TILE, 3), np.uint8)
        tiles += [_label(blank, "failed"), _label(blank.copy(), res.reason[:38]), blank.copy()]
    info = {"eye": f"{field}/{eye}", "slab": slab, "status": res.status, "reason": res.reason,
            "n_inliers": res.n_inliers, "n_matches": len(res.matches),
            "matrix_octa_to_photo": None if not res.ok else to_photo.tolist(),
            "rotation_deg": rotation, "octa_field_px": field_px,
            "seconds": res.timings.get("total")}
    return tiles, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2]
                    / "shared" / "data" / "CF_OCTA_dev")
    ap.add_argument("--matcher", default="default")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--transform", default="similarity")
    ap.add_argument("--margin", type=float, default=1.3, help="clip side = field px x margin")
    ap.add_argument("--out", type=Path, default=None,
                    help="PNG (default docs/img/cfocta_dev_<matcher>.png)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"cfocta_dev_sheet: {args.data} does not exist")
    matcher = get_matcher(args.matcher, weights=args.weights)
    rows, infos = [], []
    for field in FIELD_PX:
        for cf_path in sorted((args.data / field / "B_Fundus").glob("*.jpg")):
            tiles, info = register_eye(args.data, field, cf_path.stem, matcher, args.margin,
                                       args.transform)
            rows.append(np.hstack(tiles))
            infos.append(info)
            print(f"{info['eye']:10s} {info['slab']:20s} {info['status']:6s} "
                  f"inliers {info['n_inliers']:4d}  {info['reason']}")
    out = args.out or Path("docs/img") / f"cfocta_dev_{matcher.name}.png"
    write_image(out, np.vstack(rows))
    print(f"contact sheet: {out}")
    if args.json:
        record = {**run_record(vars(args) | {"data": str(args.data)}, None), "eyes": infos}
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
