"""End-to-end training on a tiny configuration: `train()` checkpoints, validates by full
registration, exports safetensors + card + provenance, resumes, and honours cancel."""
import json

import pytest
import torch

from retreg.core.matchers.loftr.weights import load_model
from retreg.training.api import TrainResult, train
from retreg.cli import main
from retreg.training.config import TrainConfig


def _tiny(tmp_path, **over) -> dict:
    cfg = {"name": "tiny", "seed": 3, "out_dir": str(tmp_path / "run"), "max_epochs": 2,
           "steps_per_epoch": 2, "val_every_epochs": 1, "torch_threads": 1,
           "model": {"channels": ["vessels"], "working_side": 56, "initial_dim": 8,
                     "block_dims": [8, 16, 32], "nhead": 2, "n_layers": 1},
           "data": {"modes": ["cffa", "cfocta"], "n_synth_cases": 2, "size": 64,
                    "batch_size": 2, "num_workers": 0, "val_pairs_per_mode": 1},
           "curriculum": {"teach_until": 1, "wean_until": 2},
           "optim": {"warmup_steps": 2}}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[TrainResult, list]:
    tmp = tmp_path_factory.mktemp("train")
    calls = []
    result = train(TrainConfig.from_dict(_tiny(tmp, tensorboard=True)),
                   progress=lambda s, n, m: calls.append((s, n, dict(m))))
    return result, calls


@pytest.mark.slow
def test_training_exports_loadable_weights_with_card_and_provenance(trained):
    result, _ = trained
    assert result.steps == 4 and result.epochs == 2 and not result.cancelled
    model = load_model(result.weights)
    assert model.config.working_side == 56 and model.config.channels == ("vessels",)
    card = json.loads(result.card.read_text())
    assert card["training"]["steps"] == 4
    assert card["provenance"]["seed"] == 3 and "torch" in card["provenance"]["packages"]
    assert "val/success" in card["validation"]["metrics"]
    run = json.loads((result.out_dir / "run.json").read_text())
    assert run["config"]["data"]["size"] == 64


@pytest.mark.slow
def test_training_reports_progress_every_step_and_logs_csv(trained):
    result, calls = trained
    assert [c[0] for c in calls] == [1, 2, 3, 4] and all(c[1] == 4 for c in calls)
    assert "train/loss" in calls[-1][2]
    metrics = next(result.out_dir.glob("logs/version_*/metrics.csv")).read_text()
    assert "train/loss" in metrics and "val/mce_median_px512" in metrics
    assert "sched/lambda" in metrics
    assert list(result.out_dir.glob("tb/version_*/events.out.tfevents.*"))


@pytest.mark.slow
def test_training_resumes_from_its_last_checkpoint(trained, tmp_path):
    result, _ = trained
    ckpt = result.out_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    more = train(TrainConfig.from_dict(_tiny(tmp_path, max_epochs=3)), resume=ckpt)
    assert more.steps == 6 and more.epochs == 3


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_a_run_killed_mid_epoch_leaves_its_latest_finished_epoch_in_last_ckpt(tmp_path):
    def kill_in_epoch_3(step, total, metrics):
        if step == 5:
            raise _Killed

    with pytest.raises(_Killed):
        train(TrainConfig.from_dict(_tiny(tmp_path, max_epochs=3)), progress=kill_in_epoch_3)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 1


@pytest.mark.slow
def test_cancel_stops_after_the_current_step(tmp_path):
    result = train(TrainConfig.from_dict(_tiny(tmp_path)), cancel=lambda: True)
    assert result.cancelled and result.steps == 1


def test_cli_rejects_a_missing_config(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
