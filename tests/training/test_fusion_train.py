"""Training of the fusion-mask net: the differentiable blend is the app's blend, the detail loss
rewards choosing the input with the detail, a tiny run exports loadable weights with their
provenance, and the FIRE-P benchmark pairs never enter training."""
import json

import cv2
import numpy as np
import pytest
import torch

from retreg.core.fusion import fused, fusion_mask, normalised_pair
from retreg.core.fusion_net import load_fusion_net
from retreg.training.fusion_data import BENCH_FIRE, fire_training_ids
from retreg.training.fusion_losses import (FusionLossConfig, fusion_loss, pyr_down, pyr_up,
                                           pyramid_blend)
from retreg.training.fusion_train import train_fusion
from retreg.training.synth import render_case


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x, np.float32))[None, None]


def test_the_torch_pyramid_steps_match_opencv():
    x = np.random.default_rng(0).random((48, 64)).astype(np.float32)
    down = cv2.pyrDown(x)
    np.testing.assert_allclose(pyr_down(_t(x))[0, 0].numpy(), down, atol=1e-5)
    np.testing.assert_allclose(pyr_up(_t(down), (48, 64))[0, 0].numpy(),
                               cv2.pyrUp(down, dstsize=(64, 48)), atol=1e-5)


def test_the_training_blend_is_the_learned_fused_view_inside_the_overlap():
    case = render_case(20_950_000, 192)
    fixed, moving = case["oct"], case["fa"]  # gray: no colour round trip in the comparison
    a, b, overlap = normalised_pair(fixed, moving)
    rgb = fused(fixed, moving, method="learned")
    share = fusion_mask(fixed, moving, method="learned")
    blend = pyramid_blend(_t(a), _t(b), _t(share))[0, 0].numpy()
    y = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[:, :, 0].astype(np.float32)
    inner = cv2.erode(overlap.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
    slope, offset = np.polyfit(blend[inner], y[inner], 1)  # the fixed image's scale
    assert np.abs(slope * blend[inner] + offset - y[inner]).mean() < 0.5  # 8-bit rounding


def test_the_detail_loss_rewards_keeping_the_input_with_the_detail():
    rng = np.random.default_rng(0)
    flat = np.full((64, 64), 0.5, np.float32)
    lines = np.zeros((64, 64), np.float32)
    lines[:, ::5] = 1.0
    lines += rng.normal(0, 0.01, lines.shape).astype(np.float32)
    a, b, valid = _t(flat), _t(lines), torch.ones(1, 1, 64, 64)
    cfg = FusionLossConfig()
    good = fusion_loss(a, b, torch.ones_like(a), valid, cfg)
    bad = fusion_loss(a, b, torch.zeros_like(a), valid, cfg)
    assert good["grad"] < bad["grad"] and good["log"] < bad["log"]
    assert good["total"] < bad["total"]


def test_a_tiny_run_exports_weights_card_and_provenance(tmp_path):
    cfg = {"name": "tiny", "out_dir": str(tmp_path / "run"), "max_epochs": 1,
           "steps_per_epoch": 2, "val_every_epochs": 1, "model": {"stem": 4, "dim": 16},
           "data": {"synth_cases": 1, "synth_size": 96, "fire_root": None, "crop": 64,
                    "batch_size": 2, "val_cases": 1}}
    result = train_fusion(cfg)
    assert result.steps == 2 and result.weights.is_file()
    card = json.loads(result.card.read_text())
    assert card["training"]["steps"] == 2 and card["architecture"]["stem"] == 4
    assert card["provenance"]["seed"] == 0 and "torch" in card["provenance"]["packages"]
    assert len(card["provenance"]["config_hash"]) == 12
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "val/loss" in run["metrics"] and run["code_version"]
    load_fusion_net(result.weights)


def test_the_fusion_benchmark_pairs_are_not_trained_on(shared_data):
    if not (shared_data / "FIRE_P" / "data").is_dir():
        pytest.skip("FIRE-P is not at hand")
    ids = fire_training_ids(shared_data / "FIRE_P")
    assert ids and not set(ids) & (BENCH_FIRE | {37})
