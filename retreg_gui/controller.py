"""The app's decisions, in plain Python: which mode a pair opens with, the half-chosen pair,
which weights a registration uses, the before/after comparison after training, which match
lines are drawn and how residuals are graded, and the text the user reads about it (the
quality verdict included). ``MainWindow`` asks and shows; this module holds no widgets, so its
rules are tested without Qt.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retreg.core import annotations as ann_io
from retreg.core.errors import AnnotationError, ModeError
from retreg.core.field import FieldPrior
from retreg.core.modality import guess_mode, prepare, resolve_mode
from retreg.core.pipeline import RegistrationConfig
from retreg.core.point_snap import snap_partner
from retreg.core.selection import even_subset
from retreg.core.types import Mode, PreparedImage, RegistrationResult
from retreg.gui.document import FIXED, MOVING, Document

AUTO_MODE = "auto"  # the toolbar's "from the file names" choice
WEIGHTED_MATCHERS = ("default", "loftr")  # matchers that take model weights
NO_MODE_NOTE = "the file names do not tell the mode: choose it in the toolbar to register"
# "inliers" are the pairs in use (model inliers plus included manual pairs), "outliers" the rest.
LINE_FILTERS = ("inliers", "all", "outliers", "none")
LINE_CAP = 150  # most match lines drawn at once, unless the user sets another cap
# Upper edges of the residual colour classes, in RANSAC inlier thresholds (one class lies above
# the last): a class then means the same on a 320-px OCTA scan and a 2912-px fundus photo.
RESIDUAL_STEPS = (0.25, 0.5, 1.0, 2.0)
HAND_THRESHOLD_PX = 5.0  # the scale without a model result: ``estimate_from_points``' threshold
POINT_FORMATS = {".json": "json", ".txt": "fire", ".csv": "csv"}  # suffix -> points file kind


@dataclass
class RegisterJob:
    """One registration to run in the background, on the images it was asked for."""

    fixed_img: np.ndarray
    moving_img: np.ndarray
    mode: str
    matcher: str = "default"
    weights: Path | None = None
    transform_type: str = "affine"
    octa_field_mm: float | None = None  # cfocta onto a whole photo: the scan size, if known

    def config(self) -> RegistrationConfig:
        return RegistrationConfig(field=FieldPrior(self.octa_field_mm))


@dataclass(frozen=True)
class Opened:
    """A pair just opened: its mode (None: the user must choose), whether to register now,
    and the status line."""

    mode: Mode | None
    register: bool
    message: str


@dataclass(frozen=True)
class Registered:
    """A registration applied to the document: the status line, and the before/after text
    when it ran for a comparison."""

    message: str
    comparison: str | None = None


def order_pair(a: str | Path, b: str | Path) -> tuple[str | Path, str | Path]:
    """(fixed, moving): the order whose names form a known mode, else as given."""
    if guess_mode(a, b) is None and guess_mode(b, a) is not None:
        return b, a
    return a, b


def registration_message(result: RegistrationResult) -> str:
    """The status line after a registration: a failure (no transform, or a failed verdict)
    says why and what to do; a low-confidence verdict and a hard pair's note come first (they
    qualify the answer)."""
    verdict = result.verdict
    if not result.ok or (verdict is not None and verdict.level == "failed"):
        why = "; ".join(verdict.reasons) if result.ok else result.reason
        return f"Registration failed: {why} — add point pairs by hand (A)"
    secs = f"{result.timings.get('total', 0):.2f} s"
    counts = f"{result.n_inliers} inliers of {len(result.selected)} selected matches in {secs}"
    notes = [n for n in (result.located_note(), result.hypothesis_note(), result.polish_note)
             if n]
    if verdict is not None and not verdict.ok:
        notes.append(verdict.summary())
    if notes:
        first = "; ".join(notes)
        return f"{first[0].upper()}{first[1:]} — registered with {result.matcher}: {counts}"
    return f"Registered with {result.matcher}: {counts}"


@dataclass(frozen=True)
class VerdictNote:
    """What the window says beside the result about its quality: ``level`` ("low confidence"
    or "failed") and one line of ``text``."""

    level: str
    text: str


def verdict_note(doc: Document) -> VerdictNote | None:
    """The note on the shown transform's verdict; None when it is ok or was never judged."""
    v = doc.verdict
    if v is None or v.ok:
        return None
    reasons = "; ".join(v.reasons)
    if v.level == "failed":
        return VerdictNote(v.level, f"Registration failed: {reasons}. No overlay is shown: "
                                    "add point pairs by hand (A).")
    return VerdictNote(v.level, f"Low confidence: {reasons}. Check the overlay before "
                                "trusting it.")


def overlay_refusal(doc: Document) -> str | None:
    """Why the overlay shows no warped image although a transform may exist (a failed
    verdict), as lines for the overlay's place; None when it may be shown."""
    v = doc.verdict
    if v is None or v.level != "failed":
        return None
    return "\n".join(["Registration failed:", *(f"• {r}" for r in v.reasons),
                      "Add point pairs by hand (A)"])


# ---------------------------------------------------------------------------- match lines
def residual_edges(doc: Document) -> tuple[float, ...]:
    """Upper edges (fixed-image px) of the residual colour classes, from the model's RANSAC
    threshold (``HAND_THRESHOLD_PX`` without a model result)."""
    thr = doc.result.threshold_px if doc.result is not None else HAND_THRESHOLD_PX
    return tuple(step * thr for step in RESIDUAL_STEPS)


def residual_class(residual: float | None, edges: tuple[float, ...]) -> int | None:
    """The colour class of a residual: 0 (best) .. ``len(edges)`` (worst); None without one."""
    if residual is None or not np.isfinite(residual):
        return None
    return int(np.searchsorted(np.asarray(edges), residual, side="left"))


def legend_labels(edges: tuple[float, ...]) -> list[str]:
    """One label per residual class, in px: "≤ 0.8 px", "0.8–1.5 px", …, "> 6 px"."""
    fmt = lambda v: f"{v:.1f}" if v < 10 else f"{v:.0f}"  # noqa: E731
    labels = [f"≤ {fmt(edges[0])} px"]
    labels += [f"{fmt(a)}–{fmt(b)} px" for a, b in zip(edges, edges[1:])]
    return labels + [f"> {fmt(edges[-1])} px"]


@dataclass(frozen=True)
class LineChoice:
    """The match lines to draw: ``ids`` out of ``total`` pairs that pass ``line_filter``."""

    ids: tuple[int, ...]
    total: int
    line_filter: str

    def text(self) -> str:
        """'showing N of M inlier lines' (or all of them, or that they are hidden)."""
        if self.line_filter == "none":
            return "match lines hidden (L shows them)"
        noun = {"inliers": "inlier", "outliers": "outlier"}.get(self.line_filter, "match")
        if len(self.ids) == self.total:
            return f"{self.total} {noun} lines"
        return f"showing {len(self.ids)} of {self.total} {noun} lines, spread evenly"


def choose_lines(doc: Document, line_filter: str, cap: int) -> LineChoice:
    """The pairs whose lines are drawn: those passing ``line_filter``, at most ``cap`` spread
    evenly over the fixed image (hand-placed pairs first, then the matcher's most confident
    in each region), plus the selected pairs always; a readable picture of hundreds of
    matches that hides no region."""
    if line_filter == "none" or not doc.pairs:
        return LineChoice((), 0, line_filter)
    pairs = [p for p in doc.pairs
             if line_filter == "all" or (line_filter == "inliers") == p.include]
    h, w = doc.fixed_img.shape[:2]
    scores = [doc.confidence.get(p.id, 2.0) for p in pairs]  # manual pairs: above any model's
    keep = even_subset(np.array([p.fixed for p in pairs], float), (w, h), cap, np.array(scores))
    chosen = {pairs[i].id for i in keep} | (set(doc.selected_ids) & {p.id for p in pairs})
    return LineChoice(tuple(p.id for p in pairs if p.id in chosen), len(pairs), line_filter)


def counts_text(doc: Document) -> str:
    """The permanent status field: mode, pairs used, median residual, the model's funnel."""
    parts = [f"mode {doc.mode.value if doc.mode else '? (choose it in the toolbar)'}"]
    if doc.pairs:
        n_inc, med = doc.inlier_residual_summary()
        parts.append(f"{len(doc.pairs)} pairs, {n_inc} used")
        parts.append(f"median residual {med:.2f} px" if med is not None
                     else f"no transform: {doc.fit_reason}")
    r = doc.result
    if r is not None:
        parts.append(f"{len(r.matches)} matches → {len(r.selected)} selected → "
                     f"{r.n_inliers} inliers")
        parts.append(f"{r.matcher} {r.timings.get('total', 0.0):.2f} s")
    if doc.verdict is not None:
        parts.append(f"verdict {doc.verdict.level}")
    return "  |  ".join(parts)


def window_title(doc: Document) -> str:
    """'*name — RetReg': the annotation's name, else the images', starred when unsaved."""
    name = doc.annotation_path.name if doc.annotation_path else (
        f"{doc.fixed_path.name} ← {doc.moving_path.name}" if doc.fixed_path and doc.moving_path
        else "no images")
    return f"{'*' if doc.is_dirty else ''}{name} — RetReg"


def annotation_images(ann: ann_io.Annotation, path: Path) -> tuple[Path, Path]:
    """(fixed, moving) image paths of an annotation; relative ones are beside the file."""
    return tuple(Path(r.path) if Path(r.path).is_absolute() else path.parent / r.path
                 for r in (ann.fixed, ann.moving))


def detector_keypoints(fixed: np.ndarray, moving: np.ndarray, mode: Mode,
                       weights: Path | None = None) -> dict[str, np.ndarray]:
    """The SuperRetina-style detector's keypoints on both images (full-resolution (N, 2) per
    side), for the app's sanity overlay (plan v5: detections green beside the ground truth)."""
    from retreg.core.matchers import get_matcher

    matcher = get_matcher("superretina", weights=weights)
    out = {}
    for k, (side, img, modality) in enumerate(((FIXED, fixed, mode.fixed_modality),
                                               (MOVING, moving, mode.moving_modality))):
        out[side] = matcher.detections(prepare(img, modality, matcher.working_side), k)
    return out


def image_mismatches(ann: ann_io.Annotation, fixed: Path | None, moving: Path | None,
                     fixed_shape: tuple[int, ...], moving_shape: tuple[int, ...]) -> list[str]:
    """How the open images differ from those the annotation was made on: size (height and
    width), else content (SHA-256, when both the annotation and the open file have one)."""
    found = []
    for side, ref, path, shape in (("fixed", ann.fixed, fixed, fixed_shape),
                                   ("moving", ann.moving, moving, moving_shape)):
        name = path.name if path else f"the open {side} image"
        if tuple(ref.shape[:2]) != tuple(shape[:2]):
            found.append(f"{side} image {name} is {shape[1]}x{shape[0]} px, the annotation's "
                         f"{Path(ref.path).name} was {ref.shape[1]}x{ref.shape[0]} px")
        elif ref.sha256 and path and ann_io.sha256_file(path) != ref.sha256:
            found.append(f"{side} image {name} differs in content from the annotation's "
                         f"{Path(ref.path).name} (SHA-256)")
    return found


def points_format(path: str | Path) -> str:
    """The kind of points file by its suffix: 'json' (annotation), 'fire' (FIRE control-point
    text) or 'csv'; ``AnnotationError`` for any other."""
    kind = POINT_FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise AnnotationError(f"{path}: not a points file (expected .json, .txt or .csv)")
    return kind


@dataclass(frozen=True)
class PointsFile:
    """A points file checked against the pair it is for: its pairs, the annotation when it is
    one (its transform type comes along), and how the images differ from the annotation's."""

    path: Path
    points: tuple[ann_io.PointPair, ...]
    annotation: ann_io.Annotation | None = None
    mismatches: tuple[str, ...] = ()

    def question(self) -> str:
        """What to ask before loading points made on other images."""
        return (f"{self.path.name} was made on other images than the open ones:\n"
                + "".join(f"\n• {m}" for m in self.mismatches)
                + "\n\nIts points may not sit where they should. Load it anyway?")


def check_points_file(path: str | Path, points, fixed: Path | None, moving: Path | None,
                      fixed_img: np.ndarray, moving_img: np.ndarray,
                      ann: ann_io.Annotation | None = None) -> PointsFile:
    """``points`` read from ``path`` (``ann``: the annotation they came from) for these
    images: ``AnnotationError`` naming the file, point and bounds when one lies off them."""
    path = Path(path)
    ann_io.check_points_in_bounds(points, fixed_img.shape, moving_img.shape, source=path)
    mismatches = () if ann is None else tuple(image_mismatches(
        ann, fixed, moving, fixed_img.shape, moving_img.shape))
    return PointsFile(path, tuple(points), ann, mismatches)


def read_points_file(path: str | Path, fixed: Path | None, moving: Path | None,
                     fixed_img: np.ndarray, moving_img: np.ndarray,
                     kind: str | None = None) -> PointsFile:
    """A points file of ``kind`` (default: by its suffix) checked for these images; raises
    ``AnnotationError`` when it cannot be read or a point lies off the images."""
    kind = kind or points_format(path)
    ann = ann_io.load_annotation(path) if kind == "json" else None
    points = (ann.points if ann is not None else ann_io.read_fire_points(path)
              if kind == "fire" else ann_io.read_csv_points(path))
    return check_points_file(path, points, fixed, moving, fixed_img, moving_img, ann)


def _summary(n: int, median: float | None) -> str:
    return f"{n} pairs used, median residual " + (f"{median:.2f} px" if median is not None
                                                   else "– (no transform)")


SNAP_WORKING_SIDE = 1024  # vessel maps for snapping: fine enough for ~1-px partners


class Controller:
    """Application logic around one ``Document``."""

    def __init__(self, doc: Document, weights: Path | None = None) -> None:
        self.doc = doc
        self.weights = weights
        self._snap_images: tuple[object, object, tuple[PreparedImage, PreparedImage]] | None = None
        self.half_pair: dict[str, Path] = {}  # one image chosen, waiting for the other
        # (matcher name, (pairs used, median residual)) before re-registering with new weights
        self.compare_before: tuple[str, tuple[int, float | None]] | None = None

    # ------------------------------------------------------------------ mode
    @staticmethod
    def choose_mode(fixed: Path, moving: Path, explicit: Mode | str | None = None,
                    chosen: str = AUTO_MODE, fixed_img: np.ndarray | None = None,
                    moving_img: np.ndarray | None = None) -> tuple[Mode | None, str]:
        """``resolve_mode`` with the explicit mode (case, annotation, command line), else the
        toolbar's choice, else the names, else the images' content when given; (None, note)
        when nothing tells it: never a silent default."""
        wanted = explicit or (None if chosen == AUTO_MODE else chosen)
        try:
            choice = resolve_mode(fixed, moving, wanted, fixed_img, moving_img)
        except ModeError as exc:  # an unknown explicit mode names itself
            if wanted:
                return None, str(exc)
            return None, NO_MODE_NOTE + (f" ({exc})" if fixed_img is not None else "")
        if choice.source == "user":
            return choice.mode, ""
        if choice.source == "name":
            return choice.mode, f"mode {choice.mode.value} guessed from the file names"
        return choice.mode, choice.describe()

    def open_images(self, fixed: Path, moving: Path, fixed_img: np.ndarray,
                    moving_img: np.ndarray, explicit: Mode | str | None = None,
                    chosen: str = AUTO_MODE, register: bool = True) -> Opened:
        """Start a document on the pair; it registers only once its mode is known."""
        mode, note = self.choose_mode(fixed, moving, explicit, chosen, fixed_img, moving_img)
        self.doc.set_images(fixed, moving, fixed_img, moving_img, mode)
        self.half_pair = {}
        return Opened(mode, register and mode is not None,
                      f"Opened {fixed.name} and {moving.name}" + (f"; {note}" if note else ""))

    def mode_chosen(self, chosen: str) -> tuple[bool, str] | None:
        """The toolbar's mode changed: (register now, status line), or None when the open
        pair's mode stays. A pair still waiting for its mode registers right away."""
        d = self.doc
        if not d.has_images:
            return None
        mode, _ = self.choose_mode(d.fixed_path, d.moving_path, chosen=chosen)
        if mode is None or mode == d.mode:
            return None
        first = d.mode is None
        d.set_mode(mode)
        if first:
            return True, f"Mode {mode.value}: registering"
        return False, f"Mode is now {mode.value}; register again (Ctrl+R) to match with it"

    def case_folder_mode(self, chosen: str) -> Mode | None:
        """The mode a case folder is listed for: the toolbar's, else the open pair's; None
        when neither says (the user must choose)."""
        return Mode(chosen) if chosen != AUTO_MODE else self.doc.mode

    # ------------------------------------------------------------------ one image at a time
    def pick_image(self, side: str, path: str | Path) -> tuple[tuple[Path, Path] | None, str]:
        """One image chosen for ``side``: (the pair to open, "") when both are known (the
        other from the open pair or an earlier pick), else (None, what to do next)."""
        d = self.doc
        chosen = {FIXED: d.fixed_path, MOVING: d.moving_path, **self.half_pair,
                  side: Path(path)}
        if chosen[FIXED] is None or chosen[MOVING] is None:
            self.half_pair = {side: Path(path)}
            return None, f"Now open the {MOVING if side == FIXED else FIXED} image"
        self.half_pair = {}
        return (chosen[FIXED], chosen[MOVING]), ""

    # ------------------------------------------------------------------ points files
    def read_points(self, path: str | Path, kind: str | None = None) -> PointsFile:
        """``read_points_file`` for the open pair."""
        d = self.doc
        if not d.has_images:
            raise AnnotationError(f"{path}: open the images before loading points onto them")
        return read_points_file(path, d.fixed_path, d.moving_path, d.fixed_img, d.moving_img,
                                kind)

    def adopt_points(self, points: PointsFile) -> str:
        """Put a checked points file's pairs into the document (one undo step); returns the
        status line."""
        if points.annotation is not None:
            self.doc.load_points(points.annotation, points.path)
        else:
            self.doc.replace_pairs(points.points, f"Import {points.path.name}", points.path)
        return f"Loaded {len(points.points)} point pairs from {points.path.name}"

    # ------------------------------------------------------------------ registration
    # ------------------------------------------------------------------ snapping
    def _prepared_for_snap(self) -> tuple[PreparedImage, PreparedImage]:
        """Both open images prepared for snapping, computed once per opened pair."""
        d = self.doc
        cached = self._snap_images
        if cached is None or cached[0] is not d.fixed_img or cached[1] is not d.moving_img:
            fixed = prepare(d.fixed_img, d.mode.fixed_modality, SNAP_WORKING_SIDE)
            moving = prepare(d.moving_img, d.mode.moving_modality, SNAP_WORKING_SIDE)
            self._snap_images = (d.fixed_img, d.moving_img, (fixed, moving))
        return self._snap_images[2]

    def snap_selected(self) -> str:
        """Move the fixed point of each selected pair onto the vessel structure matching its
        moving point (``core.point_snap``; one undo step); returns the status line."""
        d = self.doc
        ids = [i for i in d.selected_ids if d.pair(i) is not None]
        if not ids:
            return "Select the point pairs to snap first"
        if d.mode is None:
            return "Choose the mode first: snapping compares the two images' vessels"
        if d.matrix is None:
            return "Snapping needs a transform: register, or place at least 3 pairs"
        fixed, moving = self._prepared_for_snap()
        moved, refused = {}, []
        for pid in ids:
            snap = snap_partner(fixed, moving, d.pair(pid).moving, d.matrix)
            if snap.ok:
                moved[pid] = snap.fixed_xy
            else:
                refused.append(f"#{pid}: {snap.reason}")
        if moved:
            d.replace_pairs([dataclasses.replace(p, fixed=moved[p.id], source="manual")
                             if p.id in moved else p for p in d.pairs],
                            f"Snap {len(moved)} partner(s)")
        done = f"Snapped {len(moved)} of {len(ids)} pair(s)"
        return done + (f"; not moved: {'; '.join(refused)}" if refused else "")

    def register_job(self, matcher: str, octa_field_mm: float | None = None
                     ) -> tuple[RegisterJob | None, str]:
        """The job for the open pair with ``matcher`` (model weights only for matchers that
        take them) and the cfocta scan size, or (None, why not)."""
        d = self.doc
        if not d.has_images:
            return None, "Open a fixed and a moving image first"
        if d.mode is None:
            return None, "Choose the mode in the toolbar first: the file names do not tell it"
        weights = self.weights if matcher in WEIGHTED_MATCHERS else None
        return RegisterJob(d.fixed_img, d.moving_img, d.mode.value, matcher, weights,
                           d.transform_type, octa_field_mm), ""

    def registered(self, job: RegisterJob, result: RegistrationResult) -> Registered | None:
        """Apply a finished registration; None when other images were opened meanwhile."""
        d = self.doc
        if job.fixed_img is not d.fixed_img or job.moving_img is not d.moving_img:
            self.compare_before = None
            return None
        d.apply_result(result)
        return Registered(registration_message(result), self._comparison())

    def registration_failed(self) -> None:
        self.compare_before = None

    # ------------------------------------------------------------------ weights
    def use_weights(self, path: str | Path) -> str:
        """Register with these weights from now on; returns the status line."""
        self.weights = Path(path)
        return f"Using weights {self.weights.name}"

    def weights_question(self, path: str | Path) -> str | None:
        """Training produced weights: what to ask before re-registering the open pair with
        them, or None when no pair is open (then they are simply adopted)."""
        if not self.doc.has_images or self.doc.mode is None:
            return None
        return (f"Load the new weights ({Path(path).name}) and register the current pair "
                "again?")

    def compare_with(self, path: str | Path) -> str:
        """Adopt new weights and remember the open pair's fit to compare after
        re-registering; returns the status line."""
        d = self.doc
        self.compare_before = (d.result.matcher if d.result else "manual",
                               d.inlier_residual_summary())
        return self.use_weights(path)

    def _comparison(self) -> str | None:
        if self.compare_before is None:
            return None
        name, before = self.compare_before
        self.compare_before = None
        return (f"Before ({name}): {_summary(*before)}\n"
                f"After (new weights): {_summary(*self.doc.inlier_residual_summary())}\n\n"
                "Undo (Ctrl+Z) returns to the previous points.")
