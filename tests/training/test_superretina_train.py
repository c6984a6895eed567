"""Training of the SuperRetina-style matcher: soft labels, Dice, the warp back through the true
transform, the descriptor loss, PKE's acceptance rules (content threshold, cap, vessel
mask only, new points only), the phase schedule switching the loss terms, the config's checks,
and ``retreg train-superretina`` running a smoke training to per-phase weights with provenance."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retreg.training.callbacks import PhaseSchedule, phase_at
from retreg.training.datasets import SynthSource
from retreg.training.superretina_losses import (PKEConfig, accept_pke, descriptor_loss,
                                                dice_loss, gaussian_labels, mine_pke,
                                                warp_to_fixed)
from retreg.training.superretina_train import (SuperRetinaLightning, SuperRetinaTrainConfig,
                                               collate, synthetic_pairs)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"data": {"modes": ["cffa"], "n_synth_cases": 1, "size": 96, "batch_size": 2,
                  "val_pairs_per_mode": 1},
         "model": {"working_side": 96, "widths": [4, 8, 8, 16], "descriptor_dim": 16},
         "max_epochs": 3, "phases": {"schedule": [[1, 1], [2, 1], [3, 1]], "negatives": 16}}


def test_gaussian_labels_peak_at_valid_points_only():
    kpts = torch.tensor([[[10.0, 20.0], [30.0, 5.0]]])
    y = gaussian_labels(kpts, torch.tensor([[True, False]]), (40, 40), sigma=2.0)
    assert y.shape == (1, 1, 40, 40) and float(y[0, 0, 20, 10]) == pytest.approx(1.0)
    assert float(y[0, 0, 20, 12]) == pytest.approx(np.exp(-4 / 8), rel=1e-4)
    assert float(y[0, 0, 5, 30]) == 0.0


def test_dice_is_zero_for_a_perfect_map_and_ignores_outside_the_mask():
    t = gaussian_labels(torch.tensor([[[8.0, 8.0]]]), torch.tensor([[True]]), (32, 32), 2.0)
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, :16, :16] = True
    noisy = t.clone()
    noisy[..., 24:, 24:] = 1.0  # outside the mask
    assert float(dice_loss(noisy, t, mask)) == pytest.approx(0.0, abs=1e-3)
    assert float(dice_loss(torch.rand(1, 1, 32, 32), t, mask)) > 0.5


def test_the_moving_heatmap_warps_back_through_the_true_transform():
    heat1 = torch.zeros(1, 1, 32, 32)
    heat1[0, 0, 10, 15] = 1.0  # moving (x, y) = (15, 10)
    T = torch.tensor([[[1.0, 0, 5], [0, 1, -2], [0, 0, 1]]])  # fixed (10, 12) -> moving (15, 10)
    warped, inside = warp_to_fixed(heat1, torch.ones(1, 32, 32, dtype=torch.bool), T, (32, 32))
    assert float(warped[0, 0, 12, 10]) == pytest.approx(1.0)
    assert not inside[0, 0, 31] and inside[0, 5, 5]  # fixed x=31 lands at moving x=36


def test_the_descriptor_loss_rewards_partners_that_match():
    torch.manual_seed(0)
    desc = F.normalize(torch.randn(1, 16, 8, 8), dim=1)
    p = torch.tensor([[[11.5, 19.5], [35.5, 43.5], [51.5, 11.5]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    neg = torch.tensor([[[3.5, 3.5], [59.5, 59.5]]])
    same = descriptor_loss(desc, desc, p, p, valid, neg, neg, temperature=0.1, radius=4.0)
    other = descriptor_loss(desc, F.normalize(torch.randn(1, 16, 8, 8), dim=1), p, p, valid,
                            neg, neg, temperature=0.1, radius=4.0)
    assert float(same) < float(other)
    none = descriptor_loss(desc, desc, p, p, torch.zeros(1, 3, dtype=torch.bool), neg, neg,
                           0.1, 4.0)
    assert float(none) == 0.0


def test_pke_accepts_only_confident_new_vessel_points_and_at_most_the_cap():
    content = torch.tensor([0.9, 0.8, 0.74, 0.95, 0.99, 0.85])
    geometric = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.9, 0.3])
    mutual = torch.ones(6, dtype=torch.bool)
    vessel = torch.tensor([True, True, True, False, True, True])
    new = torch.tensor([True, True, True, True, False, True])
    cfg = PKEConfig(content_threshold=0.75, geometric_threshold=0.5, max_new=300)
    # 2: content 0.74 < 0.75; 3: off the vessels; 4: already a label; 5: moving side silent
    assert accept_pke(content, geometric, mutual, vessel, new, cfg).tolist() == [0, 1]
    capped = PKEConfig(content_threshold=0.75, geometric_threshold=0.5, max_new=1)
    assert accept_pke(content, geometric, mutual, vessel, new, capped).tolist() == [0]
    strict = PKEConfig(content_threshold=0.85, geometric_threshold=0.5)
    assert accept_pke(content, geometric, mutual, vessel, new, strict).tolist() == [0]


def test_mining_keeps_consistent_peaks_inside_the_vessel_mask():
    torch.manual_seed(0)
    heat = torch.zeros(1, 1, 64, 64)
    peaks = [(12, 12), (12, 40), (40, 12), (40, 40), (52, 52)]
    for y, x in peaks:
        heat[0, 0, y, x] = 0.9
    desc = F.normalize(torch.randn(1, 16, 8, 8), dim=1)
    T = torch.eye(3)[None]
    vessel = torch.zeros(1, 64, 64)
    vessel[0, :30] = 1.0  # only the two upper peaks lie on vessels
    full = torch.ones(1, 64, 64, dtype=torch.bool)
    no_labels = torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.bool)
    new, ok = mine_pke(heat, heat, desc, desc, T, vessel, full, full, *no_labels,
                       PKEConfig(max_new=10), capacity=10)
    got = sorted(tuple(int(v) for v in xy) for xy in new[ok].tolist())
    assert got == [(12, 12), (40, 12)]  # (x, y)
    silent = torch.zeros_like(heat)  # nothing fires on the moving side: geometry fails
    _, ok2 = mine_pke(heat, silent, desc, desc, T, vessel, full, full, *no_labels,
                      PKEConfig(max_new=10), capacity=10)
    assert not ok2.any()
    labelled = torch.tensor([[[12.0, 12.0]]]), torch.ones(1, 1, dtype=torch.bool)
    new3, ok3 = mine_pke(heat, heat, desc, desc, T, vessel, full, full, *labelled,
                         PKEConfig(max_new=10), capacity=10)
    assert [tuple(int(v) for v in xy) for xy in new3[ok3].tolist()] == [(40, 12)]


def test_the_phase_schedule_switches_the_loss_terms():
    assert [phase_at(e, [(1, 2), (2, 1), (3, 2)]) for e in range(6)] == [1, 1, 2, 3, 3, 3]
    cfg = SuperRetinaTrainConfig.from_dict(SMALL)
    module = SuperRetinaLightning(cfg)
    ds = synthetic_pairs(cfg, SynthSource(0, 1, cache_limit=1), 2, 0)
    batch = collate([ds[0], ds[1]])
    ended = []
    schedule = PhaseSchedule(cfg.phases.schedule, ended.append)
    seen = {}
    for epoch in range(3):
        trainer = SimpleNamespace(current_epoch=epoch)
        schedule.on_train_epoch_start(trainer, module)
        torch.manual_seed(0)
        seen[module.phase] = module.terms(batch, module.phase)
        module.log = lambda *a, **k: None
        schedule.on_train_epoch_end(trainer, module)
    assert ended == [1, 2, 3]
    assert float(seen[1]["geo"]) == 0 and float(seen[2]["geo"]) > 0
    assert float(seen[1]["det"]) > 0 and float(seen[3]["pke_des"]) == 0
    assert float(seen[2]["loss"]) != float(seen[1]["loss"])


def test_the_config_checks_the_schedule_and_phase_four_needs_real_pairs():
    with pytest.raises(ValueError, match="make them agree"):
        SuperRetinaTrainConfig.from_dict({**SMALL, "max_epochs": 5})
    with pytest.raises(ValueError, match="real.annotations"):
        SuperRetinaTrainConfig.from_dict({**SMALL, "max_epochs": 1,
                                          "phases": {"schedule": [[4, 1]]}})
    with pytest.raises(ValueError, match="phase in"):
        SuperRetinaTrainConfig.from_dict({**SMALL, "max_epochs": 1,
                                          "phases": {"schedule": [[5, 1]]}})
    with pytest.raises(ValueError, match="content_threshold"):
        SuperRetinaTrainConfig.from_dict({**SMALL, "phases": {**SMALL["phases"],
                                                              "pke": {"content_threshold": 1.5}}})


@pytest.mark.slow
def test_train_superretina_exports_every_phase_with_provenance_and_resumes(tmp_path, capsys):
    from retreg.cli import main
    from retreg.core.matchers.superretina import SuperRetinaMatcher
    from retreg.training.superretina_train import train_superretina

    config = tmp_path / "sr.yaml"
    run = tmp_path / "run"
    config.write_text(json.dumps({**SMALL, "name": "tiny_sr", "out_dir": str(run),
                                  "steps_per_epoch": 1, "val_every_epochs": 3}))
    assert main(["train-superretina", "--config", str(config)]) == 0
    assert "trained 3 steps" in capsys.readouterr().out
    for phase in (1, 2, 3):
        card = json.loads((run / f"tiny_sr_phase{phase}.card.json").read_text())
        assert card["phase"] == phase and card["training"]["steps"] == phase
    assert SuperRetinaMatcher.from_weights(run / "tiny_sr.safetensors").working_side == 96
    prov = json.loads((run / "tiny_sr.card.json").read_text())["provenance"]
    assert {"config_hash", "code_version", "packages", "seed"} <= set(prov)
    assert json.loads((run / "run.json").read_text())["config_hash"] == prov["config_hash"]
    more = {**json.loads(config.read_text()), "max_epochs": 4,
            "phases": {**SMALL["phases"], "schedule": [[1, 1], [2, 1], [3, 2]]}}
    assert train_superretina(more, resume=run / "checkpoints" / "last.ckpt").steps == 4


def test_split_schedule_covers_the_epochs_with_every_phase():
    from retreg.training.superretina_train import split_schedule

    for epochs in (3, 4, 7, 30):
        s = split_schedule(epochs)
        assert [p for p, _ in s] == [1, 2, 3] and sum(e for _, e in s) == epochs
        assert min(e for _, e in s) >= 1
    assert split_schedule(30) == [[1, 10], [2, 8], [3, 12]]
    with pytest.raises(ValueError, match="at least 3"):
        split_schedule(2)
