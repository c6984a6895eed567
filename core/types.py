"""Plain data passed between the engine's stages (no behaviour beyond conversions).

Coordinates are always (x, y) in pixels. Unless a name says otherwise they are in the
*full-resolution* pixels of the image they belong to; working-resolution coordinates only
exist inside a matcher and the hypothesis search and are mapped back through ``PreparedImage``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from retreg.core.transforms import Mapping, NonRigid
    from retreg.core.verdict import Verdict


class Mode(str, Enum):
    """Registration mode: which modality is fixed and which moves onto it."""

    CFFA = "cffa"
    CFOCT = "cfoct"
    CFOCTA = "cfocta"
    OCTFA = "octfa"
    # Same-modality colour fundus pairs: not a clinical mode, but what FIRE evaluates.
    CFCF = "cfcf"

    @property
    def fixed_modality(self) -> str:
        return {"cffa": "cf", "cfoct": "cf", "cfocta": "cf", "octfa": "oct", "cfcf": "cf"}[self.value]

    @property
    def moving_modality(self) -> str:
        return {"cffa": "fa", "cfoct": "oct", "cfocta": "octa", "octfa": "fa", "cfcf": "cf"}[self.value]

    @classmethod
    def clinical(cls) -> tuple["Mode", ...]:
        """The four modes the clinic registers (CF-CF exists for benchmarks only)."""
        return (cls.CFFA, cls.CFOCT, cls.CFOCTA, cls.OCTFA)


GLOBAL_TRANSFORM_TYPES = ("similarity", "affine", "homography")  # one 3x3 matrix
# Non-rigid types (``core.transforms``): a homography plus a polish fitted on its inliers.
NONRIGID_TYPES = ("quadratic", "smooth")
TRANSFORM_TYPES = GLOBAL_TRANSFORM_TYPES + NONRIGID_TYPES


@dataclass
class PreparedImage:
    """An image ready for matching.

    ``original`` is kept untouched (full resolution, as read). ``work`` is the preprocessed
    single-channel float32 image in [0, 1] at working resolution; ``vessels`` is the
    modality-normalised vessel map (vessels bright, [0, 1]) at working resolution; ``fov``
    is the field-of-view mask (bool) at working resolution. ``scale`` = (sx, sy) with
    ``full = work * scale`` exactly (pixel-centre convention handled by ``to_full``).
    """

    original: np.ndarray
    modality: str
    work: np.ndarray
    vessels: np.ndarray
    fov: np.ndarray
    scale: tuple[float, float]

    def to_full(self, pts: np.ndarray) -> np.ndarray:
        """Working-resolution (x, y) -> full-resolution (x, y), pixel centres aligned."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        s = np.asarray(self.scale, dtype=np.float64)
        return (pts + 0.5) * s - 0.5

    def to_work(self, pts: np.ndarray) -> np.ndarray:
        """Full-resolution (x, y) -> working-resolution (x, y); inverse of ``to_full``."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        s = np.asarray(self.scale, dtype=np.float64)
        return (pts + 0.5) / s - 0.5

    @property
    def work_size(self) -> tuple[int, int]:
        """(width, height) at working resolution."""
        return self.work.shape[1], self.work.shape[0]


@dataclass
class Matches:
    """Putative correspondences, full-resolution coordinates of each image."""

    kpts_fixed: np.ndarray  # (N, 2) float64
    kpts_moving: np.ndarray  # (N, 2) float64
    confidence: np.ndarray  # (N,) float64, higher is better, in [0, 1]

    def __post_init__(self) -> None:
        self.kpts_fixed = np.asarray(self.kpts_fixed, dtype=np.float64).reshape(-1, 2)
        self.kpts_moving = np.asarray(self.kpts_moving, dtype=np.float64).reshape(-1, 2)
        self.confidence = np.asarray(self.confidence, dtype=np.float64).reshape(-1)
        if not (len(self.kpts_fixed) == len(self.kpts_moving) == len(self.confidence)):
            raise ValueError("Matches arrays must have the same length")

    def __len__(self) -> int:
        return len(self.confidence)

    def subset(self, idx: np.ndarray) -> "Matches":
        return Matches(self.kpts_fixed[idx], self.kpts_moving[idx], self.confidence[idx])

    @staticmethod
    def empty() -> "Matches":
        return Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0,)))


@dataclass
class Estimate:
    """Outcome of robust estimation. ``matrix`` maps MOVING -> FIXED (3x3), or is None on failure."""

    transform_type: str
    matrix: np.ndarray | None
    inliers: np.ndarray  # (N,) bool over the correspondences given to the estimator
    status: str  # "ok" | "failed"
    reason: str = ""  # why it failed (human readable), empty when ok

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Hypothesis:
    """The input variant of the moving image that the hypothesis search chose
    (``core.hypotheses``), so a user can be told when a pair needed one."""

    rotation_deg: int = 0  # turned counter-clockwise by this many degrees
    pitch_variant: int = 0  # 1: resampled at the fixed image's pixel pitch, 0: as prepared
    shift_px: tuple[int, int] = (0, 0)  # moved by this many working pixels
    inliers: int = 0  # its own affine consensus
    support: int = 0  # inliers of its transform among the matches of its rotation's variants
    tried: int = 1  # how many input variants were matched (``register``: for the whole pair)
    zoom: float = 1.0  # its working image resampled this many times as large
    off_scale: bool = False  # matched by the matcher's scale-trained sibling (a scale effort)


@dataclass
class RegistrationResult:
    """Everything the CLI and the GUI show about one registration."""

    mode: str
    matcher: str
    transform_type: str
    matrix: np.ndarray | None  # 3x3 moving -> fixed, full-resolution pixels (the global part)
    status: str
    reason: str
    matches: Matches  # all putative matches from the matcher
    selected: np.ndarray  # (M,) int indices into ``matches`` kept by spatial binning
    inliers: np.ndarray  # (M,) bool over ``selected``
    residuals: np.ndarray  # (M,) float, px in the fixed image, NaN when no matrix
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    fixed_shape: tuple[int, int] = (0, 0)  # (h, w) full resolution
    moving_shape: tuple[int, int] = (0, 0)
    threshold_px: float = 3.0  # full-res RANSAC inlier distance, so re-estimation reproduces it
    hypothesis: Hypothesis | None = None  # None where no search ran (e.g. points placed by hand)
    # The quality verdict (``core.verdict``) and the prepared pair it was judged on, so a
    # re-estimate can be judged again; None for results that were never judged.
    verdict: "Verdict | None" = None
    judged_on: "tuple[PreparedImage, PreparedImage] | None" = field(default=None, repr=False)
    # cfocta onto a whole photo: the scan size assumed, its field width (photo px) and the
    # clip the OCTA was registered onto (clip px -> photo px; ``judged_on`` is that clip's
    # pair); None otherwise
    located: dict | None = None
    # quadratic / smooth: the polish over ``matrix`` when the evidence supported it, else None
    # and ``polish_note`` says why the global matrix stands
    nonrigid: "NonRigid | None" = None
    polish_note: str = ""
    # the pair prepared for the fine stage, so a switch to a non-rigid type can search around
    # its polish without preparing again; None when no fine stage ran or the frame moved
    refined_on: "tuple[PreparedImage, PreparedImage] | None" = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def mapping(self) -> "Mapping | None":
        """The full moving -> fixed transform: the polish when there is one, else ``matrix``."""
        return self.nonrigid if self.nonrigid is not None else self.matrix

    @property
    def n_inliers(self) -> int:
        return int(np.count_nonzero(self.inliers))

    def hypothesis_note(self) -> str:
        """One line on a hard pair (more than one input variant tried), else "": the user
        should know that the answer came from a turned, rescaled or shifted input."""
        h = self.hypothesis
        if h is None or h.tried <= 1:
            return ""
        how = [f"turned {h.rotation_deg} deg"] if h.rotation_deg else []
        how += ["at the fixed image's pixel pitch"] if h.pitch_variant else []
        how += [f"shifted by {tuple(h.shift_px)} working px"] if any(h.shift_px) else []
        how += [f"zoomed x{h.zoom:.2f}"] if h.zoom != 1.0 else []
        by = ", matched by the scale-trained network" if h.off_scale else ""
        return (f"hard pair: {h.tried} input variants tried; chosen: moving image "
                f"{', '.join(how) or 'as given'}{by}, {h.support} matches agree")

    def located_note(self) -> str:
        """One line on where a cfocta OCTA was found inside a whole photo, else ""."""
        if not self.located:
            return ""
        return (f"OCTA located inside the whole photo: a {self.located['field_mm']:g} mm scan, "
                f"~{self.located['field_px']:.0f} px wide by the physical prior")

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "reason": self.reason,
            "mode": self.mode,
            "matcher": self.matcher,
            "transform": {
                "type": self.transform_type,
                "matrix": None if self.matrix is None else np.asarray(self.matrix).tolist(),
                "maps": "moving pixel coordinates -> fixed pixel coordinates (full resolution)",
                **({} if self.transform_type in GLOBAL_TRANSFORM_TYPES else {
                    "global": "homography",
                    "nonrigid": None if self.nonrigid is None else self.nonrigid.to_json(),
                    "polish_note": self.polish_note}),
            },
            "n_matches": int(len(self.matches)),
            "n_selected": int(len(self.selected)),
            "n_inliers": self.n_inliers,
            "median_residual_px": _median_finite(self.residuals[self.inliers]),
            "timings_s": {k: float(v) for k, v in self.timings.items()},
            "fixed_shape": list(self.fixed_shape),
            "moving_shape": list(self.moving_shape),
            "hypothesis": {} if self.hypothesis is None else {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self.hypothesis).items()},
            "verdict": None if self.verdict is None else self.verdict.to_json(),
            "located": self.located,
        }


def _median_finite(values: np.ndarray) -> float | None:
    """The median of the finite values, None when there are none (a failed fit's residuals are
    NaN; JSON has no NaN)."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if len(finite) else None
