"""The document the app edits, in plain Python: two images, the mode, the model's result,
point pairs and the transform, with undo/redo and change notification.

Every edit of the points or of the transform type is recorded as a snapshot of the (small,
immutable) document state, so undo/redo is exact and "unsaved changes" is "the history is not
at the saved position". The transform shown is the model's robust fit while the model's points
are untouched; after any manual edit it is re-estimated from the included points
(``core.pipeline``). Every point stays on its image (``core.annotations.check_points_in_bounds``):
an import that breaks this raises, an interactive edit that would is refused and observers are
told why. Observers are plain callables, so the rules are testable without Qt.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from retreg.core import annotations as ann_io
from retreg.core import transforms
from retreg.core.errors import AnnotationError
from retreg.core.pipeline import fit_points, reestimate
from retreg.core.transforms import Mapping, NonRigid
from retreg.core.types import NONRIGID_TYPES, Mode, RegistrationResult

if TYPE_CHECKING:
    from retreg.core.verdict import Verdict

FIXED, MOVING = "fixed", "moving"
# What observers are told changed: the images (a new document), the pairs/transform/result,
# the selection, the undo history (position, clean state), or an edit refused (``refusal``).
IMAGES, CONTENT, SELECTION, HISTORY, REFUSED = (
    "images", "content", "selection", "history", "refused")
EVENTS = (IMAGES, CONTENT, SELECTION, HISTORY, REFUSED)


@dataclass(frozen=True, eq=False)
class DocState:
    """What undo/redo restores. Pairs are never mutated in place, only replaced."""

    pairs: tuple[ann_io.PointPair, ...] = ()
    transform_type: str = "affine"
    result: RegistrationResult | None = None
    model_fit: bool = False  # pairs are exactly the model's: show the model's robust matrix

    def same_as(self, other: "DocState") -> bool:
        """Equal content; results (numpy inside) count as equal only when identical."""
        return (self.pairs == other.pairs and self.transform_type == other.transform_type
                and self.result is other.result and self.model_fit == other.model_fit)


def pairs_from_result(result: RegistrationResult) -> tuple[ann_io.PointPair, ...]:
    """The model's selected matches as pairs, ids 1..M in selection order, inliers included."""
    sel = np.asarray(result.selected, dtype=int)
    return tuple(ann_io.PointPair(k + 1, tuple(map(float, result.matches.kpts_fixed[idx])),
                                  tuple(map(float, result.matches.kpts_moving[idx])), "model",
                                  bool(result.inliers[k]))
                 for k, idx in enumerate(sel))


def confidence_by_id(result: RegistrationResult | None) -> dict[int, float]:
    """Matcher confidence of the model's pairs (ids as given by ``pairs_from_result``)."""
    if result is None:
        return {}
    conf = result.matches.confidence[np.asarray(result.selected, dtype=int)]
    return {k + 1: float(c) for k, c in enumerate(conf)}


class Document:
    """The open pair and everything derived from it; tells observers what changed."""

    def __init__(self) -> None:
        self.fixed_path: Path | None = None
        self.moving_path: Path | None = None
        self.fixed_img: np.ndarray | None = None
        self.moving_img: np.ndarray | None = None
        self.mode: Mode | None = None
        self.annotation_path: Path | None = None
        self._state = DocState()
        # history[i] is the state after step i; texts[i] names the step that led to it
        self._history: list[DocState] = [self._state]
        self._texts: list[str] = [""]
        self._index = 0
        self._clean_index: int | None = 0  # None: the saved state is no longer reachable
        self._observers: dict[str, list[Callable[[], None]]] = {e: [] for e in EVENTS}
        self.confidence: dict[int, float] = {}
        self.matrix: np.ndarray | None = None  # the global 3x3 part of the transform shown
        self.nonrigid: NonRigid | None = None  # its quadratic / smooth polish, if any
        self.polish_note = ""  # why a non-rigid type shows only its homography
        self.fit_reason = ""  # why there is no matrix, when there is none
        self.residuals: dict[int, float] = {}
        self.selected_ids: tuple[int, ...] = ()
        self.refusal = ""  # why the last refused edit was refused
        # (id(result), type) -> (result, result re-estimated as type), made in the background
        self._prepared: dict[tuple[int, str], tuple[RegistrationResult, RegistrationResult]] = {}
        self._refit()

    # ------------------------------------------------------------------ observers
    def observe(self, event: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every change of kind ``event`` (one of ``EVENTS``)."""
        self._observers[event].append(callback)

    def _notify(self, event: str) -> None:
        for callback in list(self._observers[event]):
            callback()

    # ------------------------------------------------------------------ read access
    @property
    def pairs(self) -> tuple[ann_io.PointPair, ...]:
        return self._state.pairs

    @property
    def transform_type(self) -> str:
        return self._state.transform_type

    @property
    def result(self) -> RegistrationResult | None:
        return self._state.result

    @property
    def verdict(self) -> "Verdict | None":
        """The quality verdict on the transform shown: the model's while its fit is shown,
        None once the points are edited (a fit from hand-edited points is not judged)."""
        st = self._state
        return st.result.verdict if st.model_fit and st.result is not None else None

    @property
    def has_images(self) -> bool:
        return self.fixed_img is not None and self.moving_img is not None

    @property
    def is_dirty(self) -> bool:
        return self._index != self._clean_index

    def pair(self, pid: int) -> ann_io.PointPair | None:
        return next((p for p in self.pairs if p.id == pid), None)

    def included_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(fixed_pts, moving_pts) of the included pairs, each (N, 2)."""
        inc = [p for p in self.pairs if p.include]
        return (np.array([p.fixed for p in inc], float).reshape(-1, 2),
                np.array([p.moving for p in inc], float).reshape(-1, 2))

    # ------------------------------------------------------------------ undo history
    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._history) - 1

    @property
    def undo_text(self) -> str:
        """Name of the step undo would revert ("" when there is none)."""
        return self._texts[self._index] if self.can_undo else ""

    @property
    def redo_text(self) -> str:
        return self._texts[self._index + 1] if self.can_redo else ""

    def undo(self) -> None:
        if self.can_undo:
            self._go_to(self._index - 1)

    def redo(self) -> None:
        if self.can_redo:
            self._go_to(self._index + 1)

    def _go_to(self, index: int) -> None:
        self._index = index
        self._restore(self._history[index])
        self._notify(HISTORY)

    def _clear_history(self) -> None:
        self._prepared.clear()
        self._history, self._texts = [self._state], [""]
        self._index, self._clean_index = 0, 0

    def _push(self, text: str, after: DocState) -> None:
        if after.same_as(self._state):
            return
        del self._history[self._index + 1:], self._texts[self._index + 1:]
        if self._clean_index is not None and self._clean_index > self._index:
            self._clean_index = None
        self._history.append(after)
        self._texts.append(text)
        self._go_to(self._index + 1)

    def mark_saved(self, path: Path | None = None) -> None:
        """The current state is what is on disk (``path``, when given, is where)."""
        if path is not None:
            self.annotation_path = path
        self._clean_index = self._index
        self._notify(HISTORY)

    # ------------------------------------------------------------------ new document
    def set_images(self, fixed_path: Path | None, moving_path: Path | None,
                   fixed_img: np.ndarray, moving_img: np.ndarray, mode: Mode | None,
                   transform_type: str | None = None) -> None:
        """Start a new document on these images (history is cleared)."""
        self.fixed_path, self.moving_path = fixed_path, moving_path
        self.fixed_img, self.moving_img = fixed_img, moving_img
        self.mode = mode
        self.annotation_path = None
        self.selected_ids = ()
        self._restore(DocState(transform_type=transform_type or self.transform_type))
        self._clear_history()
        self._notify(IMAGES)
        self._notify(HISTORY)

    def set_initial_transform(self, transform_type: str) -> None:
        """The remembered transform type, before any document is open (not undoable)."""
        if not self.pairs:
            self._restore(dataclasses.replace(self._state, transform_type=transform_type))
            self._history[self._index] = self._state

    def set_mode(self, mode: Mode | None) -> None:
        self.mode = mode

    # ------------------------------------------------------------------ edits (undoable)
    def apply_result(self, result: RegistrationResult) -> None:
        """Replace the points with a fresh model result (undoable). A result on a document
        without edits is not "unsaved work" (it can be recomputed), so stepping through
        cases does not ask to save each one."""
        was_clean = not self.is_dirty
        self._push("Register", DocState(pairs_from_result(result), result.transform_type,
                                        result, True))
        if was_clean:
            self.mark_saved()

    def set_transform_type(self, transform_type: str) -> None:
        """Switch the transform type: the model's points are re-estimated robustly and
        instantly (``reestimate``, no re-matching); edited points are refitted."""
        if transform_type == self.transform_type:
            return
        st = self._state
        if st.model_fit and st.result is not None:
            ready = self._prepared.get((id(st.result), transform_type))
            result = (ready[1] if ready is not None and ready[0] is st.result
                      else reestimate(st.result, transform_type))
            after = DocState(pairs_from_result(result), transform_type, result, True)
        else:
            after = dataclasses.replace(st, transform_type=transform_type)
        self._push(f"Transform: {transform_type}", after)

    def slow_switches(self) -> tuple[str, ...]:
        """The transform types a switch from the model's result shown would have to refit
        slowly (the non-rigid ones; a 3x3 refit takes milliseconds), not yet prepared."""
        st = self._state
        if not st.model_fit or st.result is None or not st.result.ok:
            return ()
        return tuple(t for t in NONRIGID_TYPES
                     if t != st.transform_type and (id(st.result), t) not in self._prepared)

    def offer_prepared(self, base: RegistrationResult, transform_type: str,
                       result: RegistrationResult) -> None:
        """Keep ``reestimate(base, transform_type)`` made elsewhere (a background thread), so
        switching to that type from ``base`` is instant. Dropped once the images change."""
        if any(state.result is base for state in self._history):
            self._prepared[(id(base), transform_type)] = (base, result)

    def _edit_pairs(self, text: str, pairs: tuple[ann_io.PointPair, ...]) -> None:
        """An edit that leaves the pairs as they are is no step (and keeps the model's fit)."""
        if pairs != self.pairs:
            self._push(text, dataclasses.replace(self._state, pairs=pairs, model_fit=False))

    def check_pairs(self, pairs, source: str | Path | None = None) -> None:
        """Raise ``AnnotationError`` (naming ``source``) when a pair lies off the open
        images."""
        if self.has_images:
            ann_io.check_points_in_bounds(pairs, self.fixed_img.shape, self.moving_img.shape,
                                          source=source)

    def _edit_point(self, text: str, pairs: tuple[ann_io.PointPair, ...], pid: int) -> bool:
        """An interactive edit of pair ``pid``; refused when that pair would leave its image:
        the document stays as it was and observers hear ``REFUSED`` (and ``CONTENT``, so a
        view showing the edit's preview redraws the unchanged pairs)."""
        try:
            self.check_pairs([p for p in pairs if p.id == pid])
        except AnnotationError as exc:
            self.refusal = f"{text} refused: {exc}"
            self._notify(REFUSED)
            self._notify(CONTENT)
            return False
        self._edit_pairs(text, pairs)
        return True

    def next_id(self) -> int:
        return max((p.id for p in self.pairs), default=0) + 1

    def add_pair(self, fixed_xy: tuple[float, float], moving_xy: tuple[float, float]
                 ) -> int | None:
        """A manual, included pair; returns its id (None: refused, off its image)."""
        pid = self.next_id()
        pair = ann_io.PointPair(pid, (float(fixed_xy[0]), float(fixed_xy[1])),
                                (float(moving_xy[0]), float(moving_xy[1])), "manual", True)
        return pid if self._edit_point("Add point pair", self.pairs + (pair,), pid) else None

    def move_point(self, pid: int, side: str, xy: tuple[float, float]) -> bool:
        """False when refused (the point would leave its image)."""
        xy = (float(xy[0]), float(xy[1]))
        pairs = tuple(dataclasses.replace(p, **{side: xy}) if p.id == pid else p
                      for p in self.pairs)
        return self._edit_point(f"Move {side} point {pid}", pairs, pid)

    def set_coordinate(self, pid: int, side: str, axis: int, value: float) -> bool:
        """A typed coordinate (``axis`` 0 = x, 1 = y) of one point; False when refused."""
        p = self.pair(pid)
        if p is None:
            return False
        xy = list(getattr(p, side))
        xy[axis] = float(value)
        pairs = tuple(dataclasses.replace(q, **{side: tuple(xy)}) if q.id == pid else q
                      for q in self.pairs)
        return self._edit_point(f"Set {side} {'xy'[axis]} of point {pid}", pairs, pid)

    def delete_pairs(self, ids) -> None:
        ids = set(ids)
        if ids:
            self.selected_ids = tuple(i for i in self.selected_ids if i not in ids)
            self._edit_pairs(f"Delete {len(ids)} pair(s)",
                             tuple(p for p in self.pairs if p.id not in ids))

    def set_included(self, ids, include: bool) -> None:
        ids = set(ids)
        pairs = tuple(dataclasses.replace(p, include=include) if p.id in ids else p
                      for p in self.pairs)
        self._edit_pairs(("Include" if include else "Exclude") + f" {len(ids)} pair(s)", pairs)

    def toggle_included(self, ids) -> None:
        """Include all of ``ids`` unless all are included already (then exclude them)."""
        chosen = [p for p in self.pairs if p.id in set(ids)]
        if chosen:
            self.set_included(ids, not all(p.include for p in chosen))

    def replace_pairs(self, pairs, text: str = "Import points",
                      source: str | Path | None = None) -> None:
        """Raises ``AnnotationError`` (naming ``source``), unchanged, when a pair lies off
        the open images."""
        pairs = tuple(pairs)
        self.check_pairs(pairs, source)
        self._edit_pairs(text, pairs)

    # ------------------------------------------------------------------ selection
    def select(self, ids) -> None:
        """Select the pairs of ``ids`` that exist."""
        ids = tuple(i for i in ids if self.pair(i) is not None)
        if ids != self.selected_ids:
            self.selected_ids = ids
            self._notify(SELECTION)

    # ------------------------------------------------------------------ derived values
    def _restore(self, state: DocState) -> None:
        self._state = state
        self._refit()
        self._notify(CONTENT)

    def _refit(self) -> None:
        st = self._state
        conf = confidence_by_id(st.result)
        self.confidence = {p.id: conf[p.id] for p in self.pairs
                           if p.source == "model" and p.id in conf}
        self.nonrigid, self.polish_note = None, ""
        if st.model_fit and st.result is not None:
            self.matrix, self.fit_reason = st.result.matrix, st.result.reason
            self.nonrigid, self.polish_note = st.result.nonrigid, st.result.polish_note
        elif self.pairs:
            fixed, moving = self.included_points()
            est, polish = fit_points(fixed, moving, st.transform_type,
                                     self.moving_img.shape if self.moving_img is not None
                                     else (0, 0))
            self.matrix, self.fit_reason = est.matrix, est.reason
            if polish is not None:
                self.nonrigid, self.polish_note = polish.transform, polish.note
        else:
            self.matrix, self.fit_reason = None, "no point pairs yet"
        if self.matrix is None or not self.pairs:
            self.residuals = {}
            return
        res = transforms.residuals(self.mapping, np.array([p.moving for p in self.pairs]),
                                   np.array([p.fixed for p in self.pairs]))
        self.residuals = {p.id: float(r) for p, r in zip(self.pairs, res)}

    def predict_partner(self, side: str, xy: tuple[float, float]) -> tuple[float, float] | None:
        """Where a point clicked on ``side`` should be in the other image, by the current
        transform (None when there is no transform yet)."""
        mapped = self.map_points(side, np.array([xy], float))
        if mapped is None or not np.all(np.isfinite(mapped)):
            return None
        return float(mapped[0, 0]), float(mapped[0, 1])

    @property
    def mapping(self) -> "Mapping | None":
        """The transform shown: the polish when there is one, else the matrix."""
        return self.nonrigid if self.nonrigid is not None else self.matrix

    def map_points(self, side: str, pts: np.ndarray) -> np.ndarray | None:
        """Points of ``side`` mapped into the other image by the current transform (NaN where
        a non-rigid transform has no inverse)."""
        if self.matrix is None:
            return None
        if side == MOVING:
            return transforms.map_points(self.mapping, pts)
        return transforms.inverse_points(self.mapping, pts)

    def inlier_residual_summary(self) -> tuple[int, float | None]:
        """(number of included pairs, their median residual in px)."""
        vals = [self.residuals[p.id] for p in self.pairs if p.include and p.id in self.residuals]
        return len([p for p in self.pairs if p.include]), (float(np.median(vals)) if vals else None)

    # ------------------------------------------------------------------ annotations
    def to_annotation(self) -> ann_io.Annotation:
        """The document as a core annotation (image paths, SHA-256, points, transform)."""
        ann = ann_io.new_annotation(self.fixed_path, self.fixed_img.shape, self.moving_path,
                                    self.moving_img.shape,
                                    self.mode.value if self.mode else None, list(self.pairs))
        if self.matrix is not None:
            ann.transform = {"type": self.transform_type,
                             "matrix": np.asarray(self.matrix).tolist()}
            if self.nonrigid is not None:
                ann.transform["nonrigid"] = self.nonrigid.to_json()
        return ann

    def load_points(self, ann: ann_io.Annotation, source: str | Path | None = None) -> None:
        """Adopt an annotation's points and transform type on the open images (undoable);
        raises ``AnnotationError`` (naming ``source``), unchanged, when a point lies off them."""
        self.check_pairs(ann.points, source)
        ttype = ann.transform["type"] if ann.transform else self.transform_type
        self._push("Load annotation", DocState(tuple(ann.points), ttype, None, False))
