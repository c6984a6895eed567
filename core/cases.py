"""The clinic's case-folder layout: one folder per case, files ``<id>_<modality>[_gen][_notes].png``;
our generator adds ``<id>_vessels.png``, ``<id>_vessels_clip.png`` and ``<id>_keypoints.json``.

``scan_cases`` reports every case it cannot use and why, so a bad folder shows up before it is
trained on or reviewed. The mode is always the caller's: a case folder never implies one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from retreg.core.errors import DatasetError, ImageReadError
from retreg.core.io import read_image
from retreg.core.types import Mode

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_MODALITY_TOKENS = ("cf", "fa", "oct", "octa")


class CaseRoles(NamedTuple):
    """Which files of a case one mode uses: fixed, moving and vessel-mask roles (``file_role``)
    and the key of its points in the keypoints file."""

    fixed: str
    moving: str
    vessels: str
    keypoints_key: str


MODE_ROLES = {
    Mode.CFFA: CaseRoles("cf", "fa", "vessels", "full"),
    Mode.CFOCT: CaseRoles("cf", "oct", "vessels", "full"),
    Mode.OCTFA: CaseRoles("oct", "fa", "vessels", "full"),
    Mode.CFOCTA: CaseRoles("cf_clip", "octa", "vessels_clip", "clip"),
    # CF against itself: same-modality pairs such as FIRE.
    Mode.CFCF: CaseRoles("cf", "cf", "vessels", "full"),
}


def case_mode(mode: str | Mode) -> Mode:
    """``mode`` as a Mode; DatasetError naming the valid modes when it is none of them."""
    try:
        return Mode(mode)
    except ValueError:
        raise DatasetError(f"unknown mode {mode!r}; expected one of "
                           f"{[m.value for m in Mode]}") from None


def file_role(name: str) -> str | None:
    """Which part of a case a file name is: ``cf``, ``cf_clip``, ``fa``, ``oct``, ``octa``,
    ``vessels``, ``vessels_clip``, ``keypoints``; None for anything else.

    The role is the first modality token after the id; ``gen`` and trailing notes are ignored,
    ``clip`` right after ``cf[_gen]`` makes the clipped CF (``12_cf_gen_clip_512``).
    """
    tokens = Path(name).stem.lower().split("_")
    for k in range(1, len(tokens)):
        tok, rest = tokens[k], tokens[k + 1:]
        if tok == "keypoints" and Path(name).suffix.lower() == ".json":
            return "keypoints"
        if tok == "vessels":
            return "vessels_clip" if rest[:1] == ["clip"] else "vessels"
        if tok in _MODALITY_TOKENS:
            if rest[:1] == ["gen"]:
                rest = rest[1:]
            return "cf_clip" if tok == "cf" and rest[:1] == ["clip"] else tok
    return None


@dataclass(frozen=True)
class Case:
    """One usable case for one mode: paths plus the optional generator side data."""

    name: str
    mode: Mode
    fixed_path: Path
    moving_path: Path
    vessels_path: Path | None
    keypoints: np.ndarray | None  # (N, 2) float64 (x, y) in case pixels
    shape: tuple[int, int]  # (h, w) of fixed and moving


def _read_keypoints(path: Path, key: str) -> np.ndarray:
    data = json.loads(path.read_text(encoding="utf-8"))
    pts = np.asarray(data[key], dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"'{key}' is not a list of [x, y, ...] points")
    return pts[:, :2]


def _scan_one(folder: Path, mode: Mode) -> Case | str:
    """A Case, or the reason the folder cannot be used for this mode."""
    fixed_role, moving_role, vessel_role, kp_key = MODE_ROLES[mode]
    by_role: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        role = file_role(p.name) if p.is_file() else None
        if role is not None and (role == "keypoints" or p.suffix.lower() in IMAGE_SUFFIXES):
            by_role.setdefault(role, []).append(p)
    for role in (fixed_role, moving_role, vessel_role, "keypoints"):
        if len(by_role.get(role, [])) > 1:
            names = ", ".join(p.name for p in by_role[role])
            return f"ambiguous: {len(by_role[role])} files for '{role}' ({names})"
    missing = [r for r in (fixed_role, moving_role) if r not in by_role]
    if missing:
        return f"missing {' and '.join(missing)} image for mode {mode.value}"
    fixed_path, moving_path = by_role[fixed_role][0], by_role[moving_role][0]
    shapes = []
    for p in (fixed_path, moving_path):
        try:
            shapes.append(read_image(p).shape[:2])
        except ImageReadError as exc:
            return f"unreadable image: {exc}"
    if shapes[0] != shapes[1]:
        return (f"size mismatch: fixed {fixed_path.name} is {shapes[0][1]}x{shapes[0][0]}, "
                f"moving {moving_path.name} is {shapes[1][1]}x{shapes[1][0]}")
    vessels_path = by_role.get(vessel_role, [None])[0]
    if vessels_path is not None:
        try:
            vshape = read_image(vessels_path).shape[:2]
        except ImageReadError as exc:
            return f"unreadable vessel mask: {exc}"
        if vshape != shapes[0]:
            return (f"size mismatch: vessel mask {vessels_path.name} is {vshape[1]}x{vshape[0]}, "
                    f"images are {shapes[0][1]}x{shapes[0][0]}")
    keypoints = None
    if "keypoints" in by_role:
        try:
            keypoints = _read_keypoints(by_role["keypoints"][0], kp_key)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"malformed keypoints file {by_role['keypoints'][0].name}: {exc}"
    return Case(folder.name, mode, fixed_path, moving_path, vessels_path, keypoints, shapes[0])


def scan_cases(root: str | Path, mode: str | Mode) -> tuple[list[Case], list[tuple[str, str]]]:
    """All usable cases under ``root`` for ``mode`` and every skipped case with its reason.

    Raises DatasetError when ``mode`` is unknown, ``root`` is missing or no case is usable.
    """
    mode = case_mode(mode)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    cases, skipped = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        result = _scan_one(folder, mode)
        if isinstance(result, Case):
            cases.append(result)
        else:
            skipped.append((folder.name, result))
    if not cases:
        detail = "; ".join(f"{n}: {r}" for n, r in skipped[:3]) or "no case folders"
        raise DatasetError(f"{root}: no usable case for mode {mode.value} "
                           f"({len(skipped)} skipped; {detail})")
    return cases, skipped
