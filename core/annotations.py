"""Point-pair annotations: the versioned JSON file, FIRE's control-point text, CSV, and the
real-pair export that feeds fine-tuning.

Every reader validates what it reads and raises ``AnnotationError`` naming the file and the
line or point at fault, because these files are edited by hand and by other tools; points are
checked against the images they are used with by ``check_points_in_bounds``. Every writer
is atomic (temp file in the same folder, fsync, ``os.replace``) so a crash never leaves a
half-written annotation in place of a good one.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retreg.core.atomic import atomic_write_bytes
from retreg.core.errors import AnnotationError, DatasetError
from retreg.core.transforms import from_json
from retreg.core.types import GLOBAL_TRANSFORM_TYPES, TRANSFORM_TYPES, Mode

FORMAT, VERSION = "retreg-annotation", 1
REALPAIRS_FORMAT, REALPAIRS_VERSION = "retreg-realpairs", 1
SOURCES = ("model", "manual")
CSV_COLUMNS = ("id", "x_fixed", "y_fixed", "x_moving", "y_moving", "source", "include")
_PAIR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class PointPair:
    """One correspondence: (x, y) in the fixed image and in the moving image, full resolution."""

    id: int
    fixed: tuple[float, float]
    moving: tuple[float, float]
    source: str = "manual"
    include: bool = True

    def __post_init__(self) -> None:
        # Coordinates often arrive as numpy scalars; plain Python types keep every writer exact.
        self.id = int(self.id)
        self.fixed = (float(self.fixed[0]), float(self.fixed[1]))
        self.moving = (float(self.moving[0]), float(self.moving[1]))
        self.include = bool(self.include)


@dataclass
class ImageRef:
    """Which image an annotation was made on, so a changed or swapped file can be detected."""

    path: str
    sha256: str | None
    shape: tuple[int, ...]


@dataclass
class Annotation:
    fixed: ImageRef
    moving: ImageRef
    mode: str | None
    points: list[PointPair] = field(default_factory=list)
    transform: dict | None = None  # {"type": ..., "matrix": 3x3 list}, moving -> fixed
    notes: str = ""

    def included(self) -> tuple[np.ndarray, np.ndarray]:
        """(fixed_pts, moving_pts) of the points marked ``include``, each (N, 2) float64."""
        pts = [p for p in self.points if p.include]
        return (np.array([p.fixed for p in pts], dtype=np.float64).reshape(-1, 2),
                np.array([p.moving for p in pts], dtype=np.float64).reshape(-1, 2))


# ---------------------------------------------------------------- hashing

def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- validation helpers

def _coord(text: str, where: str) -> float:
    """A coordinate from a text column (FIRE txt, CSV)."""
    try:
        x = float(text)
    except ValueError:
        raise AnnotationError(f"{where}: coordinate {text!r} is not a number") from None
    if not math.isfinite(x):
        raise AnnotationError(f"{where}: coordinate {text!r} is not finite")
    return x


def _xy(value, where: str) -> tuple[float, float]:
    """An ``[x, y]`` JSON pair: real numbers only, so quoted or boolean values are caught."""
    if not isinstance(value, list) or len(value) != 2:
        raise AnnotationError(f"{where}: expected [x, y], got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise AnnotationError(f"{where}: coordinate {v!r} is not a number")
        if not math.isfinite(v):
            raise AnnotationError(f"{where}: coordinate {v!r} is not finite")
    return float(value[0]), float(value[1])


def _point_id(value, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise AnnotationError(f"{where}: point id {value!r} is not an integer")


def _check_unique(points: list[PointPair], where: str) -> list[PointPair]:
    seen: set[int] = set()
    for p in points:
        if p.id in seen:
            raise AnnotationError(f"{where}: duplicate point id {p.id}")
        seen.add(p.id)
    return points


def _require(d: dict, key: str, where: str):
    if not isinstance(d, dict):
        raise AnnotationError(f"{where}: expected an object, got {type(d).__name__}")
    if key not in d:
        raise AnnotationError(f"{where}: missing key '{key}'")
    return d[key]


def _check_matrix(matrix, where: str) -> list[list[float]]:
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: transform matrix is not numeric") from None
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise AnnotationError(f"{where}: transform matrix must be a finite 3x3 array")
    return m.tolist()


# ---------------------------------------------------------------- image bounds

BOUNDS_MARGIN = 0.05  # share of an image's width and height a point may lie beyond its edge


def image_bounds(shape: tuple[int, ...], margin: float = BOUNDS_MARGIN
                 ) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) a point on an image of ``shape`` (h, w, ...) may take: the
    pixel area [-0.5, w - 0.5] x [-0.5, h - 0.5] widened on each side by ``margin`` times
    the width and height, so a point clicked just past the edge is kept."""
    h, w = int(shape[0]), int(shape[1])
    return (-0.5 - margin * w, w - 0.5 + margin * w, -0.5 - margin * h, h - 0.5 + margin * h)


def check_points_in_bounds(pairs, fixed_shape: tuple[int, ...], moving_shape: tuple[int, ...],
                           margin: float = BOUNDS_MARGIN, source: str | os.PathLike | None = None
                           ) -> None:
    """Raise ``AnnotationError`` for the first pair with a coordinate that is not finite or
    lies outside its image (``image_bounds``), naming ``source``, the point id, the side, the
    point and the bounds. A point far off its image wrecks the fit and every view of it."""
    for p in pairs:
        for side, shape in (("fixed", fixed_shape), ("moving", moving_shape)):
            x, y = getattr(p, side)
            x0, x1, y0, y1 = image_bounds(shape, margin)
            if math.isfinite(x) and math.isfinite(y) and x0 <= x <= x1 and y0 <= y <= y1:
                continue
            where = f"{source}: point id {p.id}" if source is not None else f"point id {p.id}"
            what = "is not finite" if not (math.isfinite(x) and math.isfinite(y)) else (
                f"is outside the {side} image ({shape[1]}x{shape[0]} px: "
                f"x from {x0:.1f} to {x1:.1f}, y from {y0:.1f} to {y1:.1f})")
            raise AnnotationError(f"{where}: {side} point ({x:g}, {y:g}) {what}")


# ---------------------------------------------------------------- JSON

def _image_ref_to_dict(ref: ImageRef) -> dict:
    return {"path": ref.path, "sha256": ref.sha256, "shape": list(ref.shape)}


def _image_ref_from_dict(d, where: str) -> ImageRef:
    path = _require(d, "path", where)
    sha = _require(d, "sha256", where)
    shape = _require(d, "shape", where)
    if not isinstance(path, str) or not path:
        raise AnnotationError(f"{where}: 'path' must be a non-empty string")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise AnnotationError(f"{where}: 'sha256' must be 64 lowercase hex digits or null")
    if (not isinstance(shape, list) or len(shape) not in (2, 3)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise AnnotationError(f"{where}: 'shape' must be [h, w] or [h, w, c] positive integers")
    return ImageRef(path, sha, tuple(shape))


def to_dict(ann: Annotation) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "fixed": _image_ref_to_dict(ann.fixed),
        "moving": _image_ref_to_dict(ann.moving),
        "mode": ann.mode,
        "points": [{"id": p.id, "fixed": list(p.fixed), "moving": list(p.moving),
                    "source": p.source, "include": p.include} for p in ann.points],
        "transform": ann.transform,
        "notes": ann.notes,
    }


def from_dict(d, where: str = "annotation") -> Annotation:
    """Validate and convert a parsed JSON object; ``where`` prefixes every error message."""
    fmt = _require(d, "format", where)
    if fmt != FORMAT:
        raise AnnotationError(f"{where}: format is {fmt!r}, expected {FORMAT!r}")
    version = _require(d, "version", where)
    if version != VERSION:
        raise AnnotationError(f"{where}: version {version!r} is not supported (expected {VERSION})")
    fixed = _image_ref_from_dict(_require(d, "fixed", where), f"{where}: fixed")
    moving = _image_ref_from_dict(_require(d, "moving", where), f"{where}: moving")
    mode = _require(d, "mode", where)
    if mode is not None and mode not in {m.value for m in Mode}:
        raise AnnotationError(f"{where}: mode {mode!r} is not one of "
                              f"{', '.join(m.value for m in Mode)}")
    raw_points = _require(d, "points", where)
    if not isinstance(raw_points, list):
        raise AnnotationError(f"{where}: 'points' must be a list")
    points = []
    for i, rp in enumerate(raw_points):
        pwhere = f"{where}: point #{i}"
        pid = _point_id(_require(rp, "id", pwhere), pwhere)
        pwhere = f"{where}: point id {pid}"
        source = _require(rp, "source", pwhere)
        if source not in SOURCES:
            raise AnnotationError(f"{pwhere}: source {source!r} is not 'model' or 'manual'")
        include = _require(rp, "include", pwhere)
        if not isinstance(include, bool):
            raise AnnotationError(f"{pwhere}: include must be true or false, got {include!r}")
        points.append(PointPair(pid, _xy(_require(rp, "fixed", pwhere), pwhere),
                                _xy(_require(rp, "moving", pwhere), pwhere), source, include))
    _check_unique(points, where)
    transform = d.get("transform")
    if transform is not None:
        ttype = _require(transform, "type", f"{where}: transform")
        if ttype not in TRANSFORM_TYPES:
            raise AnnotationError(f"{where}: transform type {ttype!r} is not one of "
                                  f"{', '.join(TRANSFORM_TYPES)}")
        matrix = _check_matrix(_require(transform, "matrix", f"{where}: transform"), where)
        polish = transform.get("nonrigid")
        transform = {"type": ttype, "matrix": matrix}
        if polish is not None:
            try:
                from_json(polish, np.asarray(matrix, np.float64))
            except (ValueError, AttributeError) as exc:
                raise AnnotationError(f"{where}: transform nonrigid: {exc}") from exc
            transform["nonrigid"] = polish
    notes = d.get("notes", "")
    if not isinstance(notes, str):
        raise AnnotationError(f"{where}: 'notes' must be a string")
    return Annotation(fixed, moving, mode, points, transform, notes)


def save_annotation(path: str | os.PathLike, ann: Annotation) -> None:
    text = json.dumps(to_dict(ann), indent=2, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def _read_text(path: Path, encoding: str) -> str:
    """A text file's contents, or an ``AnnotationError`` that says why it cannot be read."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read ({exc})") from None


def load_annotation(path: str | os.PathLike) -> Annotation:
    path = Path(path)
    text = _read_text(path, "utf-8")
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    return from_dict(d, str(path))


def new_annotation(fixed_path: str | os.PathLike, fixed_shape: tuple[int, ...],
                   moving_path: str | os.PathLike, moving_shape: tuple[int, ...],
                   mode: str | None, points: list[PointPair] | None = None) -> Annotation:
    """An annotation bound to two image files on disk (their SHA-256 is computed here)."""
    return Annotation(ImageRef(str(fixed_path), sha256_file(fixed_path), tuple(fixed_shape)),
                      ImageRef(str(moving_path), sha256_file(moving_path), tuple(moving_shape)),
                      mode, list(points or []))


# ---------------------------------------------------------------- FIRE control-point text

def read_fire_points(path: str | os.PathLike) -> list[PointPair]:
    """FIRE ``control_points_*.txt``: one ``x_fixed y_fixed x_moving y_moving`` line per point.

    Points are numbered 1.. in file order, marked manual and included.
    """
    path = Path(path)
    lines = _read_text(path, "utf-8").splitlines()
    points = []
    for lineno, line in enumerate(lines, start=1):
        cols = line.split()
        if not cols:
            continue
        where = f"{path}: line {lineno}"
        if len(cols) != 4:
            raise AnnotationError(f"{where}: expected 4 columns "
                                  f"(x_fixed y_fixed x_moving y_moving), got {len(cols)}")
        xf, yf, xm, ym = (_coord(c, where) for c in cols)
        points.append(PointPair(len(points) + 1, (xf, yf), (xm, ym), "manual", True))
    if not points:
        raise AnnotationError(f"{path}: no control points")
    return points


def write_fire_points(path: str | os.PathLike, points: list[PointPair]) -> None:
    """Coordinates only (FIRE has no ids, sources or include flags): pass the points to keep."""
    lines = [f"{p.fixed[0]!r} {p.fixed[1]!r} {p.moving[0]!r} {p.moving[1]!r}" for p in points]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


# ---------------------------------------------------------------- CSV

def _parse_bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise AnnotationError(f"{where}: include must be true or false, got {value!r}")


def read_csv_points(path: str | os.PathLike) -> list[PointPair]:
    """CSV with the header ``id,x_fixed,y_fixed,x_moving,y_moving,source,include``."""
    path = Path(path)
    text = _read_text(path, "utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0]] != list(CSV_COLUMNS):
        raise AnnotationError(f"{path}: line 1: header must be {','.join(CSV_COLUMNS)}")
    points = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        where = f"{path}: line {lineno}"
        if len(row) != len(CSV_COLUMNS):
            raise AnnotationError(f"{where}: expected {len(CSV_COLUMNS)} columns, got {len(row)}")
        pid = _point_id(row[0].strip(), where)
        source = row[5].strip()
        if source not in SOURCES:
            raise AnnotationError(f"{where}: source {source!r} is not 'model' or 'manual'")
        points.append(PointPair(pid, (_coord(row[1], where), _coord(row[2], where)),
                                (_coord(row[3], where), _coord(row[4], where)),
                                source, _parse_bool(row[6], where)))
    return _check_unique(points, str(path))


def write_csv_points(path: str | os.PathLike, points: list[PointPair]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for p in points:
        w.writerow([p.id, repr(p.fixed[0]), repr(p.fixed[1]), repr(p.moving[0]),
                    repr(p.moving[1]), p.source, "true" if p.include else "false"])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


# ---------------------------------------------------------------- real-pair export

def _check_pair_id(pair_id: str) -> None:
    if not isinstance(pair_id, str) or not _PAIR_ID.fullmatch(pair_id):
        raise AnnotationError(f"pair id {pair_id!r} must be letters, digits, '.', '_' or '-' "
                              "and start with a letter or digit")


def _read_manifest(root: Path) -> list[str]:
    path = root / "manifest.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{root}: no manifest.json (not a real-pair export folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read manifest ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != REALPAIRS_FORMAT:
        raise DatasetError(f"{path}: format is not {REALPAIRS_FORMAT!r}")
    if d.get("version") != REALPAIRS_VERSION:
        raise DatasetError(f"{path}: version {d.get('version')!r} is not supported "
                           f"(expected {REALPAIRS_VERSION})")
    pairs = d.get("pairs")
    if not isinstance(pairs, list) or not all(isinstance(p, str) for p in pairs):
        raise DatasetError(f"{path}: 'pairs' must be a list of pair ids")
    return pairs


def export_realpair(root: str | os.PathLike, pair_id: str, annotation: Annotation,
                    fixed_img: np.ndarray, moving_img: np.ndarray,
                    H_computed: np.ndarray | None = None,
                    transform_type: str = "homography") -> Path:
    """Write ``ROOT/<pair_id>/{fixed.png, moving.png, annotation.json}`` and list the pair in
    ``ROOT/manifest.json``. The pair's files are written before the manifest names it, so a
    reader never sees a listed pair that is half written. Returns the pair folder.

    The annotation copy points at the copied images (paths relative to its own folder, with
    their SHA-256 and shape); its transform is ``H_computed`` when given.
    """
    from retreg.core.io import write_image  # the image codec lives with the engine's io

    _check_pair_id(pair_id)
    root = Path(root)
    pair_dir = root / pair_id
    pair_dir.mkdir(parents=True, exist_ok=True)
    refs = {}
    for name, img in (("fixed", fixed_img), ("moving", moving_img)):
        path = pair_dir / f"{name}.png"
        write_image(path, img)
        refs[name] = ImageRef(path.name, sha256_file(path), tuple(int(s) for s in img.shape))
    transform = annotation.transform
    if H_computed is not None:
        if transform_type not in GLOBAL_TRANSFORM_TYPES:
            raise ValueError(f"H_computed is a 3x3 {', '.join(GLOBAL_TRANSFORM_TYPES)}, not "
                             f"{transform_type!r}: fine-tuning learns global transforms")
        transform = {"type": transform_type,
                     "matrix": _check_matrix(H_computed, f"pair {pair_id}")}
        if annotation.transform and annotation.transform.get("nonrigid"):
            transform["note"] = ("the global homography of a non-rigid fit: fine-tuning learns "
                                 "3x3 transforms, the polish is not exported")
    copy = Annotation(refs["fixed"], refs["moving"], annotation.mode,
                      list(annotation.points), transform, annotation.notes)
    save_annotation(pair_dir / "annotation.json", copy)
    pairs = _read_manifest(root) if (root / "manifest.json").exists() else []
    if pair_id not in pairs:
        pairs.append(pair_id)
    manifest = {"format": REALPAIRS_FORMAT, "version": REALPAIRS_VERSION, "pairs": pairs}
    atomic_write_bytes(root / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return pair_dir


def read_realpairs(root: str | os.PathLike
                   ) -> tuple[list[tuple[str, Path, Path, Annotation]], list[tuple[str, str]]]:
    """Pairs listed in ``ROOT/manifest.json`` as ``(pair_id, fixed_path, moving_path,
    annotation)``, plus ``(pair_id, reason)`` for each listed pair that cannot be used."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: real-pair folder does not exist")
    good, skipped = [], []
    for pair_id in _read_manifest(root):
        try:
            _check_pair_id(pair_id)
            pair_dir = root / pair_id
            ann = load_annotation(pair_dir / "annotation.json")
            fixed, moving = pair_dir / ann.fixed.path, pair_dir / ann.moving.path
            for ref, path in ((ann.fixed, fixed), (ann.moving, moving)):
                if not path.is_file():
                    raise AnnotationError(f"{path.name} is missing")
                if ref.sha256 is not None and sha256_file(path) != ref.sha256:
                    raise AnnotationError(f"{path.name} does not match its SHA-256 "
                                          "(changed after export)")
        except AnnotationError as exc:
            skipped.append((pair_id, str(exc)))
            continue
        good.append((pair_id, fixed, moving, ann))
    return good, skipped
