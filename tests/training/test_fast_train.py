"""Training of the fast structural matcher: the config refuses unknown keys and values, the
turned pairs keep their labels true, each distillation variant gives a finite loss that
training lowers, and ``retreg train-fast`` runs a 2-step smoke training to loadable weights."""
import json

import numpy as np
import pytest
import torch

from retreg.core.geometry import map_points
from retreg.training.datasets import SynthSource
from retreg.training.fast_train import (FastLightning, FastTrainConfig, Rot90Pairs, _collate,
                                        _pairs, config_hash, keypoint_targets, rot90_matrix)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"data": {"modes": ["cffa"], "n_synth_cases": 1, "size": 96, "batch_size": 2,
                  "val_pairs_per_mode": 1},
         "model": {"working_side": 96, "widths": [8, 16, 32], "descriptor_dim": 16}}


@pytest.mark.parametrize("values,key", [({"colour": 1}, "colour"),
                                        ({"model": {"depth": 3}}, "depth"),
                                        ({"loss": {"distil": "vessels"}}, "distil"),
                                        ({"data": {"augment": {}}}, "augment"),
                                        ({"data": {"aug": {"spin": 1}}}, "spin")])
def test_the_config_refuses_unknown_keys(values, key):
    with pytest.raises(ValueError, match=key):
        FastTrainConfig.from_dict(values)


def test_the_config_refuses_an_unknown_distillation_and_its_hash_follows_it():
    with pytest.raises(ValueError, match="distill must be one of"):
        FastTrainConfig.from_dict({"loss": {"distill": "semantic"}})
    a = FastTrainConfig.from_dict({"loss": {"distill": "none"}})
    b = FastTrainConfig.from_dict({"loss": {"distill": "teacher"}})
    assert config_hash(a) != config_hash(b) and config_hash(a) == config_hash(
        FastTrainConfig.from_dict({"loss": {"distill": "none"}}))


def test_rot90_matrix_is_numpys_turn():
    a = np.zeros((8, 8))
    a[1, 6] = 1  # (x, y) = (6, 1)
    for k in range(4):
        x, y = map_points(rot90_matrix(k, 8), np.array([[6.0, 1.0]]))[0]
        assert np.rot90(a, k)[int(round(y)), int(round(x))] == 1


def test_turned_pairs_keep_vessels_and_keypoints_on_their_partners():
    cfg = FastTrainConfig.from_dict({**SMALL, "data": {**SMALL["data"], "size": 160,
                                                       "rot90_p": 1.0}})
    ds = _pairs(cfg, SynthSource(0, 1, cache_limit=1), 2, 0)
    assert isinstance(ds.datasets[0], Rot90Pairs)
    item = ds[1]
    ys, xs = np.nonzero(item["vessel0"] > 0.5)
    p = np.rint(map_points(item["T_0to1"].astype(float), np.stack([xs, ys], 1).astype(float)))
    p = p.astype(int)
    inside = (p >= 0).all(1) & (p < 160).all(1)
    assert item["vessel1"][p[inside, 1], p[inside, 0]].mean() > 0.6
    assert (item["gt_j"] >= 0).sum() > 50


def test_keypoint_targets_name_the_junction_pixel_inside_its_cell():
    kpts = torch.tensor([[[13.0, 2.0], [0.0, 0.0]]])
    t = keypoint_targets(kpts, torch.tensor([[True, False]]), (2, 2))
    assert t[0, 0, 1] == 2 * 8 + 5 and (t.flatten()[[0, 2, 3]] == 64).all()


@pytest.mark.parametrize("distill", ["none", "vessels", "teacher"])
def test_each_distillation_variant_trains_its_loss_down(distill):
    torch.manual_seed(0)
    cfg = FastTrainConfig.from_dict({**SMALL, "loss": {"distill": distill},
                                     "optim": {"lr": 3e-3, "warmup_steps": 1}})
    ds = _pairs(cfg, SynthSource(0, 1, cache_limit=1), 2, 0)
    batch = _collate([ds[0], ds[1]])
    module = FastLightning(cfg)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(8):
        terms = module._terms(batch)
        assert torch.isfinite(terms["loss"])
        if first is None:
            first = {k: float(v.detach()) for k, v in terms.items()}
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    last = {k: float(v) for k, v in module._terms(batch).items()}
    assert last["loss"] < first["loss"]
    if distill != "none":
        assert last["distill"] < first["distill"]
    assert "teacher" not in "".join(module.state_dict())  # the frozen teacher is not saved


@pytest.mark.slow
def test_train_fast_runs_a_two_step_smoke_training(tmp_path, capsys):
    from retreg.cli import main
    from retreg.core.matchers.fast import FastMatcher

    config = tmp_path / "fast.yaml"
    config.write_text(json.dumps({**SMALL, "name": "tiny_fast", "out_dir": str(tmp_path / "run"),
                                  "max_epochs": 1, "steps_per_epoch": 2,
                                  "loss": {"distill": "teacher"}}))
    assert main(["train-fast", "--config", str(config)]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    weights = tmp_path / "run" / "tiny_fast.safetensors"
    assert FastMatcher.from_weights(weights).working_side == 96
    card = json.loads((tmp_path / "run" / "tiny_fast.card.json").read_text())
    prov = card["provenance"]
    assert card["distill"] == "teacher" and card["training"]["steps"] == 2
    assert {"config_hash", "code_version", "packages", "seed"} <= set(prov)
    assert "torch" in prov["packages"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config_hash"] == \
        prov["config_hash"]
    assert main(["train-fast", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_train_fast_resumes_from_its_last_checkpoint_without_unpickling(tmp_path):
    from retreg.training.fast_train import train_fast

    cfg = {**SMALL, "name": "tiny", "out_dir": str(tmp_path / "run"), "max_epochs": 1,
           "steps_per_epoch": 2, "val_every_epochs": 1}
    assert train_fast(cfg).steps == 2
    resumed = train_fast({**cfg, "max_epochs": 2},
                         resume=tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert resumed.steps == 4  # weights_only: the checkpoint holds no pickled objects
