"""Preprocessing, FOV masks, vessel maps, scale normalisation and the model input."""
import cv2
import numpy as np
import pytest

from retreg.core.modality import ModeChoice, fov_mask, guess_mode, prepare, preprocess, source
from retreg.core.representation import model_input
from retreg.core.types import Mode
from retreg.core.vessels import vessel_map
from tests.helpers import fundus_like


@pytest.mark.parametrize("fixed, moving, mode", [
    ("12_cf_512.png", "12_fa_gen.png", Mode.CFFA),
    ("3_cf_gen_clip_512.png", "3_octa_gen.png", Mode.CFOCTA),
    ("/data/7_cf.jpg", "/data/7_oct_gen.png", Mode.CFOCT),
    ("x_oct.png", "x_fa.png", Mode.OCTFA),
])
def test_guess_mode_from_file_names(fixed, moving, mode):
    assert guess_mode(fixed, moving) is mode


def test_guess_mode_unknown_or_reversed_is_none():
    assert guess_mode("left.png", "right.png") is None
    assert guess_mode("1_fa.png", "1_cf.png") is None


def test_cf_preprocess_uses_the_green_channel():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 255
    rgb[:, 32:, 1] = 200
    out = preprocess(rgb, "cf")
    assert out.dtype == np.float32 and out.shape == (64, 64)
    assert out[:, 40:].mean() > out[:, :24].mean() + 0.3


def _disc(h, w, r, centre=None, inside=0.5):
    img = np.zeros((h, w), np.float32)
    cx, cy = centre or (w // 2, h // 2)
    cv2.circle(img, (cx, cy), r, inside, -1)
    return img


def test_fov_mask_fills_dark_regions_inside_the_field():
    img = _disc(200, 300, 80)
    cv2.circle(img, (150, 100), 40, 0.0, -1)  # dark blob (e.g. early FA) inside the FOV
    mask = fov_mask(img)
    assert mask[100, 150]  # hull covers the dark centre
    assert not mask[5, 5] and not mask[100, 20]
    assert abs(mask.sum() - np.pi * 80 ** 2) / (np.pi * 80 ** 2) < 0.1


def test_fov_mask_of_a_full_frame_image_is_everything():
    rng = np.random.default_rng(0)
    assert fov_mask(rng.uniform(0.3, 1.0, (100, 120)).astype(np.float32)).all()


@pytest.mark.parametrize("modality, value", [("cf", 0.1), ("oct", 0.1), ("fa", 0.9), ("octa", 0.9)])
def test_vessel_map_makes_vessels_bright_in_every_modality(modality, value):
    img = np.full((128, 128), 0.5, np.float32)
    cv2.line(img, (10, 64), (118, 64), value, 3)
    v = vessel_map(img, modality)
    assert v.dtype == np.float32 and 0.0 <= v.min() and v.max() <= 1.0
    on, off = v[64, 30:100].mean(), v[20:40, 30:100].mean()
    assert on > 0.4 and on > 20 * off


def _fundus(h, w, r):
    """A gray 'fundus': disc FOV with a few dark vessel lines, on a black frame."""
    img = _disc(h, w, r, inside=0.6)
    for k in range(6):
        a = k * np.pi / 6
        p0 = (int(w / 2 - r * np.cos(a)), int(h / 2 - r * np.sin(a)))
        p1 = (int(w / 2 + r * np.cos(a)), int(h / 2 + r * np.sin(a)))
        cv2.line(img, p0, p1, 0.2, 3)
    img *= fov_mask(img)  # nothing bright leaks outside the disc
    return (img * 255).astype(np.uint8)


def test_prepare_scales_the_fov_to_the_working_side_on_non_square_images():
    img = _fundus(560, 700, 250)  # FOV box 501 px in a 700x560 frame
    p = prepare(img, "cf", working_side=256)
    ys, xs = np.nonzero(p.fov)
    assert max(np.ptp(xs), np.ptp(ys)) + 1 == pytest.approx(256, abs=4)
    f = 256 / 501
    assert p.work.shape[0] == pytest.approx(560 * f, abs=3)
    assert p.work.shape[1] == pytest.approx(700 * f, abs=4)
    assert p.scale == (700 / p.work.shape[1], 560 / p.work.shape[0])
    assert p.vessels.shape == p.work.shape == p.fov.shape
    assert p.original is img


def test_prepare_caps_the_frame_when_the_fov_is_small():
    img = _fundus(400, 1000, 60)
    p = prepare(img, "fa", working_side=200)
    assert max(p.work.shape) <= 300


def test_coordinate_mapping_round_trips_and_matches_the_resize():
    h, w = 700, 1100
    img = np.zeros((h, w), np.uint8)
    cv2.ellipse(img, (550, 350), (500, 320), 0, 0, 360, 120, -1)
    spot = np.array([[813.0, 207.0]])
    cv2.circle(img, (813, 207), 9, 255, -1)
    p = prepare(img, "fa", working_side=300)
    assert p.scale[0] != p.scale[1] or p.work.shape[0] != p.work.shape[1]
    pts = np.array([[0.0, 0.0], [w - 1.0, h - 1.0], [123.4, 567.8]])
    np.testing.assert_allclose(p.to_full(p.to_work(pts)), pts, atol=1e-9)
    # the bright spot really is where to_work says it is in the resized image
    y, x = np.unravel_index(np.argmax(cv2.GaussianBlur(p.work, (0, 0), 2)), p.work.shape)
    np.testing.assert_allclose([x, y], p.to_work(spot)[0], atol=1.0)
    np.testing.assert_allclose(p.to_full([[x, y]])[0], spot[0], atol=1.0 * max(p.scale))


def test_model_input_standardises_intensity_inside_the_fov():
    p = prepare(_fundus(300, 400, 120), "cf", working_side=128)
    x = model_input(p)
    assert x.dtype == np.float32 and x.shape == (2, *p.work.shape)
    inside = x[0][p.fov]
    assert abs(inside.mean()) < 1e-4 and inside.std() == pytest.approx(1.0, abs=1e-3)
    assert np.all(x[0][~p.fov] == 0)
    np.testing.assert_array_equal(x[1], p.vessels)
    from_arrays = model_input(p.work, p.vessels, channels=("vessels",))
    assert from_arrays.shape == (1, *p.work.shape)


def test_model_input_rejects_unknown_channels():
    with pytest.raises(ValueError, match="channels"):
        model_input(np.zeros((32, 32), np.float32), np.zeros((32, 32), np.float32), ("rgb",))


def test_resolve_mode_prefers_the_user_then_the_file_names_and_never_assumes():
    from retreg.core.errors import ModeError
    from retreg.core.modality import resolve_mode

    assert resolve_mode("a_cf.png", "a_fa.png") == ModeChoice(Mode.CFFA, "name")
    assert resolve_mode("a_cf.png", "a_fa.png", "cfoct") == ModeChoice(Mode.CFOCT, "user")
    assert resolve_mode("x.png", "y.png", Mode.OCTFA).source == "user"
    with pytest.raises(ModeError, match="cannot tell the mode.*x.png.*cffa"):
        resolve_mode("x.png", "y.png")
    with pytest.raises(ModeError, match="unknown mode 'cfxx'"):
        resolve_mode("a_cf.png", "a_fa.png", "cfxx")


def test_an_image_prepared_from_its_source_is_the_image_prepared_directly():
    img = fundus_like(300, 4)
    src = source(img, "cf")
    for side in (96, 160):
        a, b = prepare(src, "cf", side), prepare(img, "cf", side)
        assert a.scale == b.scale and a.original is img
        for name in ("work", "vessels", "fov"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    with pytest.raises(ValueError, match="made for cf"):
        prepare(src, "fa", 96)
