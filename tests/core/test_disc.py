"""The disc finder lands on the synthetic disc, and the clip maps back to the photo exactly."""
import numpy as np
import pytest

from retreg.core.disc import clip_around_disc, locate_disc
from retreg.core.modality import source
from retreg.training.synth import render_case
from retreg.training.synth.scene import make_scene
from retreg.training.synth.view import full_view


def test_locate_disc_lands_within_a_disc_radius_on_nearly_every_synthetic_eye():
    view = full_view(512)
    errors = []
    for seed in range(10_000_000, 10_000_010):
        anatomy = make_scene(seed).anatomy
        disc = view.to_px(np.asarray(anatomy.disc))
        found = np.asarray(locate_disc(render_case(seed, size=512)["cf"]))
        errors.append(np.hypot(*(found - disc)) / (anatomy.disc_r * view.scale))
    assert sum(e <= 1.0 for e in errors) >= 9, np.round(errors, 2)


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


def test_clip_smaller_than_8_px_is_a_value_error():
    with pytest.raises(ValueError, match="clip sides"):
        clip_around_disc(np.zeros((100, 100, 3), np.uint8), side_px=4)


def test_the_disc_is_found_at_the_same_place_from_the_photo_or_its_source():
    photo = render_case(10_000_003, size=512)["cf"]
    assert locate_disc(source(photo, "cf")) == locate_disc(photo)
    centre = locate_disc(photo)
    a, ma = clip_around_disc(photo, 200, 128)
    b, mb = clip_around_disc(photo, 200, 128, centre=centre)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
