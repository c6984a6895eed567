"""Multi-process training: `retreg train --devices 2 --strategy ddp` with two CPU processes
(gloo). Lightning's DDP launcher re-executes the command line, so it runs in a subprocess."""
import os
import subprocess
import sys

import pytest
import yaml

from retreg.core.matchers.loftr.weights import load_model

pytestmark = pytest.mark.slow


def test_ddp_with_two_cpu_processes_trains_and_exports_once(tmp_path):
    cfg = {"name": "ddp", "out_dir": str(tmp_path / "run"), "max_epochs": 1, "steps_per_epoch": 2,
           "val_every_epochs": 1, "torch_threads": 1,
           "export": str(tmp_path / "ddp.safetensors"),
           "model": {"channels": ["vessels"], "working_side": 56, "initial_dim": 8,
                     "block_dims": [8, 16, 32], "nhead": 2, "n_layers": 1},
           "data": {"modes": ["cffa"], "n_synth_cases": 2, "size": 64, "batch_size": 1,
                    "num_workers": 0, "val_pairs_per_mode": 2}}
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    proc = subprocess.run([sys.executable, "-m", "retreg.cli", "train", "--config", str(path),
                           "--devices", "2", "--strategy", "ddp", "--no-progress"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "MEMBER: 2/2" in log and "distributed_backend=gloo" in log
    assert load_model(tmp_path / "ddp.safetensors").config.working_side == 56
    assert proc.stdout.count("trained 2 steps") == 1  # only rank 0 exports and reports


def test_superretina_ddp_with_two_cpu_processes_exports_once(tmp_path):
    from retreg.core.matchers.superretina.weights import load_model as load_superretina

    cfg = {"name": "srddp", "out_dir": str(tmp_path / "run"), "max_epochs": 2,
           "steps_per_epoch": 1, "val_every_epochs": 2, "torch_threads": 1,
           "model": {"working_side": 96, "widths": [4, 8, 8, 16], "descriptor_dim": 16},
           "data": {"modes": ["cffa"], "n_synth_cases": 2, "size": 96, "batch_size": 1,
                    "val_pairs_per_mode": 1},
           "phases": {"schedule": [[1, 1], [3, 1]], "negatives": 16}}
    path = tmp_path / "srddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    proc = subprocess.run([sys.executable, "-m", "retreg.cli", "train-superretina", "--config",
                           str(path), "--devices", "2", "--strategy", "ddp"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stdout + proc.stderr
    assert proc.stdout.count("trained 2 steps") == 1  # only rank 0 exports and reports
    assert load_superretina(tmp_path / "run" / "srddp.safetensors").config.working_side == 96
    assert (tmp_path / "run" / "srddp_phase1.safetensors").is_file()
