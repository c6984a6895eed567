"""The disc finder lands on the synthetic disc, and the clip maps back to the photo exactly."""
import numpy as np
import pytest

from core.disc import clip_around_disc, locate_disc
from training.synth import render_case


@pytest.mark.parametrize("seed", [10_000_003, 10_000_004, 10_000_005])
def test_locate_disc_lands_inside_the_disc_centred_clip_box(seed):
    case = render_case(seed, size=512)
    x0, y0, x1, y1 = case["clip_box"]
    x, y = locate_disc(case["cf"])
    margin = 0.1 * (x1 - x0)
    assert x0 - margin <= x <= x1 + margin and y0 - margin <= y <= y1 + margin


def test_clip_matrix_maps_clip_pixels_onto_the_same_photo_pixels():
    rng = np.random.default_rng(0)
    photo = (rng.random((600, 800, 3)) * 255).astype(np.uint8)
    photo[250:330, 500:580] = 255  # a bright "disc"
    clip, m = clip_around_disc(photo, side_px=200, out_side=200)  # no resampling: exact copy
    assert clip.shape == (200, 200, 3)
    for cx, cy in [(0, 0), (37, 150), (199, 199)]:
        fx, fy, _ = m @ np.array([cx, cy, 1.0])
        assert np.array_equal(clip[cy, cx], photo[int(round(fy)), int(round(fx))])
    x, y = locate_disc(photo)
    assert 500 <= x <= 580 and 250 <= y <= 330
