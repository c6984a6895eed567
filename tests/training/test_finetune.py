"""Fine-tuning on a small style-shifted "real" set: the exported model matches the held-out
pairs better than its starting point, and its card records what it was tuned on."""
import json

import cv2
import numpy as np
import pytest
import torch

from retreg.core.annotations import Annotation, ImageRef, PointPair, export_realpair
from retreg.core.matchers.loftr.model import LoftrConfig, RetRegLoFTR
from retreg.core.matchers.loftr.weights import load_model, save_weights
from retreg.training.augment import AugmentConfig
from retreg.training.datasets import AffinePairDataset
from retreg.training.finetune import FinetuneConfig, finetune
from retreg.training.realpairs import RealPairSource, load_realpairs
from retreg.training.synth import render_case

pytestmark = pytest.mark.slow


def _style_shift(img, rng):
    """Another camera: colour channels swapped, gamma, speckle noise, blur."""
    x = img.astype(np.float32) / 255
    x = np.power(x[..., ::-1] if x.ndim == 3 else x, 0.6)
    speckle = rng.gamma(30.0, 1 / 30.0, x.shape[:2]).astype(np.float32)
    x = cv2.GaussianBlur(x * (speckle[..., None] if x.ndim == 3 else speckle), (0, 0), 1.0)
    return np.clip(x * 255, 0, 255).astype(np.uint8)


def _export_pair(root, seed, size=256, n_points=20):
    """CF fixed / FA moving of one synthetic eye, the moving seen from another pose, with
    clicked point pairs (1 px click noise)."""
    rng = np.random.default_rng(seed)
    case = render_case(seed, size=size)
    a = np.deg2rad(rng.choice([-1, 1]) * rng.uniform(20, 35))
    t = rng.uniform(-0.12, 0.12, 2) * size
    c = (size - 1) / 2
    G = (np.array([[1, 0, c + t[0]], [0, 1, c + t[1]], [0, 0, 1]])
         @ np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
         @ np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]]))  # fixed -> moving
    fixed = _style_shift(case["cf"], rng)
    moving = _style_shift(cv2.warpAffine(case["fa"], G[:2], (size, size)), rng)
    ys, xs = np.nonzero(cv2.erode(case["fov"].astype(np.uint8), np.ones((15, 15), np.uint8)))
    pick = rng.choice(len(xs), n_points, replace=False)
    f_pts = np.c_[xs[pick], ys[pick]].astype(np.float64)
    m_pts = (np.c_[f_pts, np.ones(n_points)] @ G.T)[:, :2] + rng.normal(0, 1.0, f_pts.shape)
    ann = Annotation(ImageRef("f.png", None, fixed.shape), ImageRef("m.png", None, moving.shape),
                     "cffa", [PointPair(k, f, m) for k, (f, m) in enumerate(zip(f_pts, m_pts))])
    export_realpair(root, f"eye{seed}", ann, fixed, moving)


def _matched_cell_accuracy(model, root, n_views=3):
    """Share of ground-truth cells (H_computed, moderate random rotations) whose best coarse
    match is the labelled cell or a neighbour: dense, so a small set still measures learning."""
    pairs = load_realpairs(root, model.config.working_side)[0]
    src = RealPairSource(pairs, 128, model.config.working_side)
    ds = AffinePairDataset(src, "cffa", size=128, channels=model.config.channels,
                           aug=AugmentConfig(rotation_deg=30.0), length=n_views * len(src), seed=7)
    hits = []
    model.eval()
    for item in (ds[i] for i in range(len(ds))):
        with torch.no_grad():
            log_conf = model.forward_coarse(torch.from_numpy(item["image0"])[None],
                                            torch.from_numpy(item["image1"])[None]).log_conf[0]
        i = np.flatnonzero(item["gt_j"] >= 0)
        j, gt = log_conf[i].argmax(1).numpy(), item["gt_j"][i]
        hits.append((np.abs(j % 16 - gt % 16) <= 1) & (np.abs(j // 16 - gt // 16) <= 1))
    return float(np.mean(np.concatenate(hits)))


def test_finetuned_model_beats_its_start_on_held_out_pairs_and_card_records_the_data(tmp_path):
    for seed in range(100, 110):
        _export_pair(tmp_path / "real", seed)
    for seed in range(110, 114):  # never seen, not even by early stopping
        _export_pair(tmp_path / "unseen", seed)
    torch.manual_seed(0)
    start = RetRegLoFTR(LoftrConfig(initial_dim=16, block_dims=(16, 32, 64), n_layers=1,
                                    working_side=128))
    start.backbone.moving.load_state_dict(start.backbone.fixed.state_dict())  # tied at init
    save_weights(start, tmp_path / "start.safetensors")
    cfg = FinetuneConfig.from_dict({
        "annotations": str(tmp_path / "real"), "init_weights": str(tmp_path / "start.safetensors"),
        "export": str(tmp_path / "tuned.safetensors"), "out_dir": str(tmp_path / "run"),
        "max_epochs": 4, "steps_per_epoch": 20, "torch_threads": 1,
        "data": {"batch_size": 2, "heldout_fraction": 0.3, "replay_cases": 2,
                 "replay_modes": ["cffa"], "augment": {"rotation_deg": 40.0}},
        "eval": {"patience": 5, "cap_px": 50.0},
        "optim": {"lr": 3e-3, "backbone_lr_mult": 1.0, "warmup_steps": 5}})
    steps = []
    res = finetune(cfg, progress=lambda step, total, metrics: steps.append(step))

    assert res.steps == 80 and steps[-1] == 80
    assert res.best_step > 0, "no fine-tuned state beat the starting weights"
    assert res.after.hit_rate > res.before.hit_rate
    assert res.after.score <= res.before.score
    assert not set(res.train_pairs) & set(res.heldout_pairs)

    card = json.loads(res.card.read_text())
    assert card["finetune"]["heldout_pairs"] == res.heldout_pairs
    assert card["finetune"]["counts"]["train"] == len(res.train_pairs) == 7
    assert card["metrics"]["heldout_after"]["anchor_hit_rate"] == res.after.hit_rate
    assert card["provenance"]["config"]["anchor_weight"] == 1.0
    tuned = load_model(res.weights)
    before = _matched_cell_accuracy(start, tmp_path / "unseen")
    after = _matched_cell_accuracy(tuned, tmp_path / "unseen")
    print(f"unseen pairs, matched-cell accuracy: {before:.3f} -> {after:.3f}")
    assert after > before + 0.02
