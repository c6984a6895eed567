"""Snapping an annotated point's partner onto the matching vessel structure."""
import cv2
import numpy as np

from retreg.core.geometry import map_points
from retreg.core.modality import prepare
from retreg.core.point_snap import snap_partner
from tests.helpers import vessel_lines


def _pair():
    """A vessel pattern (fixed, dark vessels) and its copy shrunk 0.75x and moved (moving,
    bright vessels), with the true moving -> fixed matrix."""
    mask = vessel_lines(400, seed=3, n_lines=14, steps=12, step_px=18, spread=(0.1, 0.9),
                        turn_sd=0.35).astype(np.float32)
    fixed = (200 - 140 * mask).astype(np.uint8)
    truth = np.array([[1 / 0.75, 0, 12.0], [0, 1 / 0.75, -8.0], [0, 0, 1.0]])
    moving = cv2.warpPerspective((40 + 180 * mask).astype(np.uint8), np.linalg.inv(truth),
                                 (300, 300), flags=cv2.INTER_LINEAR)
    return prepare(fixed, "cf", 400), prepare(moving, "octa", 300), truth


def test_a_partner_a_few_pixels_off_snaps_back_onto_the_vessels():
    fixed, moving, truth = _pair()
    rough = np.array([[1, 0, 6.0], [0, 1, -5.0], [0, 0, 1.0]]) @ truth
    snapped = []
    for xy in [(110.0, 95.0), (150.0, 160.0), (80.0, 200.0), (200.0, 120.0)]:
        s = snap_partner(fixed, moving, xy, rough, patch_px=30, search_px=14)
        if s.ok:
            true_xy = map_points(truth, np.array([xy]))[0]
            snapped.append(np.hypot(*(np.array(s.fixed_xy) - true_xy)))
    assert len(snapped) >= 3 and max(snapped) < 1.5


def test_a_point_without_vessels_is_refused_with_the_reason():
    fixed, moving, truth = _pair()
    flat = prepare(np.full((300, 300), 90, np.uint8), "octa", 300)
    s = snap_partner(fixed, flat, (150.0, 150.0), truth)
    assert not s.ok and s.fixed_xy is None and s.reason


def test_a_partner_beyond_the_fixed_image_is_refused():
    fixed, moving, truth = _pair()
    far = np.array([[1, 0, 500.0], [0, 1, 0], [0, 0, 1.0]]) @ truth
    assert "edge" in snap_partner(fixed, moving, (150.0, 150.0), far).reason
