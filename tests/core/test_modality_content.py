"""The modality from the pixels, and ``resolve_mode`` falling back on it."""
import numpy as np
import pytest

from retreg.core.errors import ModeError
from retreg.core.io import read_image
from retreg.core.modality import MIN_CONTENT_CONFIDENCE, resolve_mode
from retreg.core.modality_content import guess_modality
from retreg.core.types import Mode
from retreg.training.synth import render_case


@pytest.fixture(scope="module")
def case():
    return render_case(10_500_007, size=512)


@pytest.mark.parametrize("key, modality", [("cf", "cf"), ("cf_clip", "cf"), ("fa", "fa"),
                                           ("oct", "oct"), ("octa", "octa")])
def test_each_synthetic_modality_is_recognised_with_confidence(case, key, modality):
    guess = guess_modality(case[key])
    assert guess.modality == modality and guess.confidence >= MIN_CONTENT_CONFIDENCE


def test_gray_stored_as_rgb_and_16_bit_images_keep_their_modality(case):
    assert guess_modality(np.dstack([case["fa"]] * 3)).modality == "fa"
    assert guess_modality(case["octa"].astype(np.uint16) * 257).modality == "octa"


def test_a_flat_image_is_no_confident_guess():
    assert guess_modality(np.full((300, 300), 120, np.uint8)).confidence < MIN_CONTENT_CONFIDENCE


def test_resolve_mode_uses_the_content_when_the_names_say_nothing(case):
    choice = resolve_mode("a.png", "b.png", fixed_img=case["cf"], moving_img=case["fa"])
    assert choice.mode is Mode.CFFA and choice.source == "content"
    assert "fixed cf" in choice.describe() and "moving fa" in choice.describe()
    assert resolve_mode("a.png", "b.png", fixed_img=case["cf"], moving_img=case["cf"]).mode \
        is Mode.CFCF
    assert resolve_mode("a.png", "b.png", "cfoct", case["cf"], case["fa"]).source == "user"
    assert resolve_mode("x_cf.png", "x_oct.png", None, case["cf"], case["fa"]).mode is Mode.CFOCT


def test_resolve_mode_says_what_it_guessed_when_the_content_is_no_mode(case):
    with pytest.raises(ModeError, match="swapped"):
        resolve_mode("a.png", "b.png", fixed_img=case["fa"], moving_img=case["cf"])
    with pytest.raises(ModeError, match="for sure.*moving like octa"):
        resolve_mode("a.png", "b.png", fixed_img=case["cf"],
                     moving_img=np.full((300, 300), 120, np.uint8))


def test_real_fundus_and_octa_are_recognised(shared_data):
    fundus = read_image(shared_data / "FIRE_P" / "data" / "P10_1.jpg")
    octa_dir = shared_data / "CF_OCTA_dev" / "3x3" / "A_OCTA" / "B_RPC"
    octa = read_image(sorted(octa_dir.glob("*.jpg"))[0])
    assert resolve_mode("a.jpg", "b.jpg", fixed_img=fundus, moving_img=octa).mode is Mode.CFOCTA
