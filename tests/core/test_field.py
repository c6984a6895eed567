"""The cfocta physical scale prior: expected OCTA field width, whole photo vs clip, plausibility."""
import cv2
import numpy as np
import pytest

from retreg.core.field import (CLIP_MARGIN, FieldPrior, field_clips, fov_diameter,
                               implausible_field, is_whole_photo)
from retreg.core.geometry import map_points
from retreg.core.modality import prepare
from tests.helpers import fundus_like


def test_a_scan_spans_its_share_of_the_photos_field_of_view():
    prior = FieldPrior(fov_deg=45.0)
    # 45 degrees of retina are ~12.6 mm, so a 3 mm scan spans ~0.24 of the FOV's diameter
    assert prior.field_px(3.0, 1000.0) == pytest.approx(238, abs=2)
    assert prior.field_px(6.0, 1000.0) == pytest.approx(2 * prior.field_px(3.0, 1000.0))
    assert FieldPrior(fov_deg=30.0).field_px(3.0, 1000.0) > prior.field_px(3.0, 1000.0)


def test_without_a_scan_size_the_usual_sizes_are_tried():
    assert FieldPrior().sizes_mm == (3.0, 6.0) and FieldPrior(6.0).sizes_mm == (6.0,)


@pytest.mark.parametrize("kwargs", [{"field_mm": 0.0}, {"field_mm": 100.0}, {"fov_deg": 0.0}])
def test_an_impossible_prior_is_refused(kwargs):
    with pytest.raises(ValueError):
        FieldPrior(**kwargs)


def test_a_round_field_of_view_is_a_whole_photo_and_its_clip_is_not():
    photo = cv2.cvtColor(fundus_like(400), cv2.COLOR_GRAY2RGB)
    prepared = prepare(photo, "cf", 256)
    assert is_whole_photo(prepared)
    assert fov_diameter(prepared) == pytest.approx(0.9 * 400, rel=0.05)
    assert not is_whole_photo(prepare(np.ascontiguousarray(photo[120:280, 120:280]), "cf", 256))


def test_each_candidate_clip_is_margin_times_the_expected_field_and_maps_to_the_photo():
    photo = cv2.cvtColor(fundus_like(600), cv2.COLOR_GRAY2RGB)
    prepared = prepare(photo, "cf", 256)
    clips = field_clips(photo, prepared, FieldPrior())
    assert [c.field_mm for c in clips] == [3.0, 6.0]
    for c in clips:
        side = np.ptp(map_points(c.to_photo, np.array([[-0.5, -0.5], [511.5, 511.5]])), axis=0)
        assert side == pytest.approx([CLIP_MARGIN * c.field_px] * 2, rel=0.01)


def test_a_fitted_field_far_from_the_prior_is_named_implausible():
    assert implausible_field(460, 440) == ""
    assert "x1.50" in implausible_field(660, 440)
    assert implausible_field(300, 440) != ""
