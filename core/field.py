"""Where a small OCTA field lies inside a whole colour fundus photo: the physical scale prior and
the disc-centred clips the cfocta mode registers onto.

An optic-nerve-head OCTA scan covers a few millimetres around the disc, a fundus photo some
12-13 mm (45 degrees), so the OCTA spans a quarter to a half of the photo's field of view and the
matcher cannot see it at the photo's scale. Given the scan's side in mm and the photo's field of
view in degrees, the field's expected width in photo pixels follows from the FOV's diameter;
without them, the usual scan sizes are tried. Each candidate is a square clip
``CLIP_MARGIN`` x the expected field, centred on the disc (``core.disc``), the shape of the
clinic's ``_cf_clip_512``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retreg.core.disc import clip_around_disc, locate_disc
from retreg.core.modality import Source
from retreg.core.types import PreparedImage

MM_PER_DEGREE = 0.28  # retina: about 0.28-0.29 mm per degree of visual angle (adult eye)
CLIP_MARGIN = 1.5
CLIP_SIDE = 512
OCTA_FIELDS_MM = (3.0, 6.0, 12.0)  # the scan sizes a user can name
SCAN_SIZES_MM = (3.0, 6.0)  # tried when the scan's size is not given
PLAUSIBLE_FIELD_RATIO = 1.35  # a fitted field this much larger or smaller than expected fails
_WHOLE_PHOTO_FOV_SHARE = 0.9  # a clip is all fundus; a photo's round FOV leaves dark corners


@dataclass(frozen=True)
class FieldPrior:
    """What is known of the pair's physical scale: the OCTA scan's side (mm; None = unknown)
    and the photo's field of view (degrees)."""

    field_mm: float | None = None
    fov_deg: float = 45.0

    def __post_init__(self) -> None:
        if self.field_mm is not None and not 0.5 <= self.field_mm <= 30:
            raise ValueError(f"OCTA field must be 0.5-30 mm, got {self.field_mm}")
        if not 10 <= self.fov_deg <= 200:
            raise ValueError(f"the photo's field of view must be 10-200 degrees, "
                             f"got {self.fov_deg}")

    @property
    def sizes_mm(self) -> tuple[float, ...]:
        return (self.field_mm,) if self.field_mm is not None else SCAN_SIZES_MM

    def field_px(self, field_mm: float, fov_diameter_px: float) -> float:
        """The expected width (photo px) of a ``field_mm`` scan in a FOV ``fov_diameter_px``
        wide."""
        return field_mm / (self.fov_deg * MM_PER_DEGREE) * fov_diameter_px


@dataclass(frozen=True)
class FieldClip:
    """A candidate clip: the image, its clip px -> photo px matrix, the scan size it assumes
    and the OCTA field width (photo px) that implies."""

    clip: np.ndarray
    to_photo: np.ndarray
    field_mm: float
    field_px: float


def fov_diameter(cf: PreparedImage) -> float:
    """The photo's FOV diameter in full-resolution px (its widest extent)."""
    ys, xs = np.nonzero(cf.fov)
    if not len(xs):
        return float(max(cf.original.shape[:2]))
    return float(max((np.ptp(xs) + 1) * cf.scale[0], (np.ptp(ys) + 1) * cf.scale[1]))


def is_whole_photo(cf: PreparedImage) -> bool:
    """True for a fundus photo with its round FOV in a dark frame, False for a clip of one."""
    return float(cf.fov.mean()) < _WHOLE_PHOTO_FOV_SHARE


def field_clips(photo: np.ndarray | Source, cf: PreparedImage, prior: FieldPrior
                ) -> list[FieldClip]:
    """One disc-centred clip per scan size the prior allows (``cf``: the photo, prepared;
    ``photo`` may be its ``Source``)."""
    diameter = fov_diameter(cf)
    disc = locate_disc(photo)
    image = photo.image if isinstance(photo, Source) else photo
    out = []
    for mm in prior.sizes_mm:
        field = prior.field_px(mm, diameter)
        clip, to_photo = clip_around_disc(image, round(CLIP_MARGIN * field), CLIP_SIDE, disc)
        out.append(FieldClip(clip, to_photo, mm, field))
    return out


def field_width(matrix: np.ndarray, moving_shape: tuple[int, ...]) -> float:
    """The width (fixed px) a moving field of ``moving_shape`` gets under ``matrix``."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:2, :2]))) * moving_shape[1])


def implausible_field(width_px: float, expected_px: float) -> str:
    """Why a fitted field ``width_px`` wide cannot be the expected one, or ""."""
    ratio = width_px / expected_px
    if 1 / PLAUSIBLE_FIELD_RATIO <= ratio <= PLAUSIBLE_FIELD_RATIO:
        return ""
    return (f"the OCTA field spans {width_px:.0f} px of the photo, the physical prior "
            f"{expected_px:.0f} px (x{ratio:.2f})")
