"""Run configs validate themselves however they are built, and every bundled YAML loads."""
import dataclasses
from importlib.resources import files
from pathlib import Path

import pytest

from retreg.training.config import DataConfig, RunConfig, TrainConfig
from retreg.training.fast_train import FastTrainConfig
from retreg.training.finetune import FinetuneConfig, FinetuneData, FinetuneEval
from retreg.training.fusion_train import FusionTrainConfig
from retreg.training.superretina_train import SuperRetinaTrainConfig
from retreg.training.realpairs import HCheck

CONFIGS = sorted(Path(str(files("retreg.training").joinpath("configs"))).glob("*.yaml"))


def _kind(path: Path) -> type[RunConfig]:
    if path.name.startswith("fusion"):
        return FusionTrainConfig
    if path.name.startswith("fast"):
        return FastTrainConfig
    if path.name.startswith("superretina"):
        return SuperRetinaTrainConfig
    return FinetuneConfig if path.name.startswith("finetune") else TrainConfig


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_bundled_yaml_loads_and_round_trips(path):
    cfg = _kind(path).load(path)
    assert type(cfg) is _kind(path)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


def test_bundled_yaml_values_reach_the_config():
    cfg = FinetuneConfig.load(files("retreg.training").joinpath("configs", "finetune_default.yaml"))
    assert (cfg.name, cfg.max_minutes, cfg.optim.lr, cfg.data.augment.scale_range) == (
        "retreg_loftr_ft", 15, 1e-4, [0.85, 1.15])


def test_load_passes_a_config_through_and_reads_a_mapping():
    cfg = TrainConfig(name="x")
    assert TrainConfig.load(cfg) is cfg
    assert TrainConfig.load({"name": "y"}).name == "y"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TrainConfig.load("no/such.yaml")


@pytest.mark.parametrize("build, message", [
    (lambda: DataConfig(size=100), "multiple of 8"),
    (lambda: DataConfig(modes=[]), "none given"),
    (lambda: TrainConfig(max_epochs=0), ">= 1"),
    (lambda: TrainConfig(init_weights="a", init_backbone="b"), "exclude each other"),
    (lambda: FinetuneConfig(steps_per_epoch=0), ">= 1"),
    (lambda: FinetuneData(real_fraction=0.0), "real_fraction"),
    (lambda: FinetuneData(replay_modes=["cfxx"]), "unknown modes"),
    (lambda: FinetuneEval(transform="rigid"), "transform must be one of"),
    (lambda: HCheck(transform="rigid"), "transform must be one of"),
    (lambda: HCheck(transform="smooth"), "training learns 3x3 transforms"),
])
def test_configs_built_in_code_are_validated(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_yaml_errors_name_the_key_path():
    with pytest.raises(ValueError, match=r"config\.data: size must be a multiple of 8"):
        TrainConfig.from_dict({"data": {"size": 100}})
    with pytest.raises(ValueError, match=r"config\.eval: every_epochs"):
        FinetuneConfig.from_dict({"eval": {"every_epochs": 0}})
    with pytest.raises(ValueError, match=r"config\.h_computed: unknown keys \['x'\]"):
        FinetuneConfig.from_dict({"h_computed": {"x": 1}})


def test_both_families_share_the_run_fields():
    run = {f.name for f in dataclasses.fields(RunConfig)}
    assert run <= {f.name for f in dataclasses.fields(TrainConfig)}
    assert run <= {f.name for f in dataclasses.fields(FinetuneConfig)}
