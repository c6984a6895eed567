"""Training configuration: one YAML file <-> nested dataclasses, validated on load so a typo
fails before an hour of training, not after."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from retreg.core.matchers.loftr.model import LoftrConfig
from retreg.core.types import Mode
from retreg.training.augment import AugmentConfig

CROSS_MODAL_MODES = ("cffa", "cfoct", "octfa", "cfocta")
VALIDATION_SEED_START = 10_000_000  # held-out synthetic seeds: never used for training


@dataclass
class DataConfig:
    """``root``: pre-rendered case folders (``retreg synth``); None renders cases on the fly
    from seeds ``seed_start`` .. ``seed_start + n_synth_cases - 1``."""

    modes: list[str] = field(default_factory=lambda: list(CROSS_MODAL_MODES))
    root: str | None = None
    n_synth_cases: int = 200
    seed_start: int = 0
    size: int = 256
    batch_size: int = 4
    num_workers: int = 1
    cache_limit: int = 64
    val_pairs_per_mode: int = 8
    aug: dict = field(default_factory=dict)  # overrides of training.augment.AugmentConfig fields
    aug_by_mode: dict = field(default_factory=dict)  # mode -> overrides on top of ``aug``


@dataclass
class CurriculumConfig:
    """Plan v2.2: teach (epochs < teach_until) -> linear weaning -> independence (>= wean_until).
    ``lambda_start = 0`` and ``scaler_start = 1`` give plan v2.1 (no vessel priors)."""

    lambda_start: float = 2.0
    scaler_start: float = 10.0
    teach_until: int = 25
    wean_until: int = 50


@dataclass
class OptimConfig:
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.1
    warmup_steps: int = 100
    fine_weight: float = 1.0
    fine_std_weighting: bool = False
    max_fine: int = 512
    grad_clip: float = 1.0
    unmatched_weight: float = 0.0  # weight of training.losses.unmatched_loss (0: LoFTR's loss)


@dataclass
class TrainConfig:
    name: str = "retreg_loftr"
    seed: int = 0
    out_dir: str = "runs/retreg_loftr"
    max_epochs: int = 100
    steps_per_epoch: int = 40
    max_minutes: float | None = None
    val_every_epochs: int = 5
    init_backbone: str | None = None  # safetensors file: only backbone.* keys are loaded
    init_weights: str | None = None  # safetensors file: the whole model (a new training stage)
    early_stop_start_epoch: int = 100
    early_stop_patience: int = 5
    torch_threads: int = 2
    tensorboard: bool = False  # also log to TensorBoard (out_dir/tb; needs retreg[tensorboard])
    export: str | None = None  # safetensors path written at the end (+ .card.json)
    model: LoftrConfig = field(default_factory=LoftrConfig)
    data: DataConfig = field(default_factory=DataConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def augment(self, mode: str | None = None) -> AugmentConfig:
        """The augmentation of training and validation pairs of ``mode``: ``data.aug`` with
        ``data.aug_by_mode[mode]`` on top, so one mode can keep its geometry while the others
        change (stage 5 kept cfocta's CF clip, which holds the whole OCTA field, unshifted)."""
        values = {**self.data.aug, **self.data.aug_by_mode.get(mode, {})}
        return AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in values.items()})


def build_config(cls, values: dict, where: str):
    """A config dataclass from a YAML mapping, recursing into nested dataclasses; unknown keys
    and wrong shapes raise ValueError naming the key path (``where``)."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if is_dataclass(default):
            kwargs[name] = (LoftrConfig.from_dict(value) if isinstance(default, LoftrConfig)
                            else build_config(type(default), value, f"{where}.{name}"))
        else:
            kwargs[name] = value
    return cls(**kwargs)


def from_dict(values: dict) -> TrainConfig:
    cfg = build_config(TrainConfig, values, "config")
    bad = [m for m in cfg.data.modes if m not in {x.value for x in Mode}]
    if bad or not cfg.data.modes:
        raise ValueError(f"config.data.modes: unknown or empty {bad or cfg.data.modes}; "
                         f"expected some of {[m.value for m in Mode]}")
    unknown_aug = sorted(set(cfg.data.aug) - set(AugmentConfig.__dataclass_fields__))
    if unknown_aug:
        raise ValueError(f"config.data.aug: unknown keys {unknown_aug}")
    for mode, overrides in cfg.data.aug_by_mode.items():
        if mode not in cfg.data.modes:
            raise ValueError(f"config.data.aug_by_mode: {mode!r} is not one of data.modes "
                             f"{cfg.data.modes}")
        if not isinstance(overrides, dict):
            raise ValueError(f"config.data.aug_by_mode.{mode}: expected a mapping")
        unknown = sorted(set(overrides) - set(AugmentConfig.__dataclass_fields__))
        if unknown:
            raise ValueError(f"config.data.aug_by_mode.{mode}: unknown keys {unknown}")
    if cfg.data.size % 8:
        raise ValueError(f"config.data.size must be a multiple of 8, got {cfg.data.size}")
    if cfg.steps_per_epoch < 1 or cfg.max_epochs < 1:
        raise ValueError("config.steps_per_epoch and config.max_epochs must be >= 1")
    if cfg.init_weights and cfg.init_backbone:
        raise ValueError("config: init_weights (whole model) and init_backbone (backbone only) "
                         "exclude each other; give one")
    return cfg


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file does not exist")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return from_dict(values)
