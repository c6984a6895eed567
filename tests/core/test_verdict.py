"""The quality verdict: evidence that nonsense cannot fake, and the judgement on it."""
import dataclasses

import cv2
import numpy as np
import pytest

from retreg.core.modality import prepare
from retreg.core.pipeline import register, reestimate
from retreg.core.verdict import Evidence, VerdictConfig, gather_evidence, judge
from retreg.training.synth import render_case

GOOD = Evidence(inliers=120, inlier_ratio=1.0, spread=0.6, overlap=0.8, scale=1.0,
                anisotropy=1.02, shear_deg=1.0, structure_ncc=0.7, structure_z=20.0)


def test_convincing_evidence_is_ok_with_no_reasons():
    verdict = judge(GOOD)
    assert verdict.ok and verdict.reasons == () and verdict.summary() == "ok"


@pytest.mark.parametrize("change, level, words", [
    ({"structure_ncc": 0.05}, "failed", "do not line up"),
    ({"structure_z": 1.0}, "failed", "do not line up"),
    ({"structure_ncc": 0.2}, "low confidence", "only weakly"),
    ({"inliers": 5}, "failed", "only 5 inliers"),
    ({"inliers": 12}, "low confidence", "few inliers"),
    ({"inlier_ratio": 0.3}, "low confidence", "30% of the selected matches"),
    ({"anisotropy": 2.5}, "failed", "squashes or shears"),
    ({"anisotropy": 1.5}, "low confidence", "stretches"),
    ({"scale": 6.0}, "failed", "implausible scale"),
    ({"overlap": 0.01}, "failed", "outside the fixed field"),
    ({"spread": 0.05}, "low confidence", "cover only 5%"),
])
def test_each_weak_or_impossible_piece_of_evidence_lowers_the_verdict_and_says_why(
        change, level, words):
    verdict = judge(dataclasses.replace(GOOD, **change))
    assert verdict.level == level and any(words in r for r in verdict.reasons)


def test_thresholds_come_from_the_config():
    strict = VerdictConfig(min_structure_ncc_ok=0.8)
    assert judge(GOOD, strict).level == "low confidence"


@pytest.fixture(scope="module")
def eye():
    return render_case(10_900_001, size=512)


def test_vessels_agree_under_the_true_transform_and_not_under_a_wrong_one(eye):
    fixed, moving = prepare(eye["cf"], "cf", 320), prepare(eye["fa"], "fa", 320)
    pts = np.random.default_rng(0).uniform(50, 450, (40, 2))
    right = gather_evidence(np.eye(3), fixed, moving, pts, 40)
    turned = cv2.getRotationMatrix2D((255.5, 255.5), 40, 1.0)
    wrong = gather_evidence(np.vstack([turned, [0, 0, 1]]), fixed, moving, pts, 40)
    assert right.structure_ncc > 0.5 and right.structure_z > 8
    assert wrong.structure_ncc < 0.2 and wrong.structure_z < right.structure_z / 2


def test_register_judges_its_result_and_reestimate_judges_again(eye):
    warp = cv2.getRotationMatrix2D((255.5, 255.5), 30, 1.05)
    moving = cv2.warpAffine(eye["fa"], warp, (512, 512))
    result = register(eye["cf"], moving, "cffa")
    assert result.verdict.ok and result.to_json()["verdict"]["level"] == "ok"
    again = reestimate(result, "similarity")
    assert again.verdict is not None and again.verdict.ok
    assert again.verdict.evidence != result.verdict.evidence  # judged on the new fit


def test_a_fundus_against_noise_fails_on_the_vessels(eye):
    noise = np.random.default_rng(3).integers(0, 256, (512, 512), dtype=np.uint8)
    verdict = register(eye["cf"], noise, "cffa").verdict
    assert verdict.level == "failed"
    assert any("do not line up" in r for r in verdict.reasons)
