"""Run configuration: one YAML file <-> nested dataclasses. Every dataclass validates itself
(``__post_init__``), so a config built in code (the GUI) is checked like one read from YAML, and
a typo fails before an hour of training, not after."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from retreg.core.matchers.loftr.model import LoftrConfig
from retreg.core.types import GLOBAL_TRANSFORM_TYPES, TRANSFORM_TYPES, Mode
from retreg.training.augment import AugmentConfig

CROSS_MODAL_MODES = ("cffa", "cfoct", "octfa", "cfocta")
VALIDATION_SEED_START = 10_000_000  # held-out synthetic seeds: never used for training
MODES = tuple(m.value for m in Mode)

R = TypeVar("R", bound="RunConfig")


def check_modes(where: str, modes: list[str]) -> None:
    """ValueError unless ``modes`` are all known registration modes."""
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"{where}: unknown modes {bad}; expected some of {list(MODES)}")


def check_transform(where: str, transform: str) -> None:
    """ValueError unless ``transform`` is a 3x3 transform type: training learns global
    transforms (a non-rigid fit's homography is what real pairs export)."""
    if transform not in GLOBAL_TRANSFORM_TYPES:
        raise ValueError(f"{where} must be one of {GLOBAL_TRANSFORM_TYPES}, got {transform!r}"
                         + (": training learns 3x3 transforms" if transform in TRANSFORM_TYPES
                            else ""))


def check_keys(where: str, values: dict, known) -> None:
    """ValueError naming the keys of ``values`` that are not in ``known``."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")


def check_augment(aug: dict, aug_by_mode: dict, modes) -> None:
    """ValueError for ``aug`` / ``aug_by_mode`` overrides that are not ``AugmentConfig`` fields
    or name a mode outside ``modes``."""
    check_keys("aug", aug, AugmentConfig.__dataclass_fields__)
    for mode, overrides in aug_by_mode.items():
        if mode not in modes:
            raise ValueError(f"aug_by_mode: {mode!r} is not one of data.modes {list(modes)}")
        if not isinstance(overrides, dict):
            raise ValueError(f"aug_by_mode.{mode}: expected a mapping")
        check_keys(f"aug_by_mode.{mode}", overrides, AugmentConfig.__dataclass_fields__)


def augment_for(aug: dict, aug_by_mode: dict, mode: str | None) -> AugmentConfig:
    """The augmentation of ``mode``'s pairs: ``aug`` with ``aug_by_mode[mode]`` on top, so one
    mode can keep its geometry while the others change (YAML lists become tuples)."""
    values = {**aug, **aug_by_mode.get(mode, {})}
    return AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


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

    def __post_init__(self) -> None:
        if not self.modes:
            raise ValueError(f"modes: none given; expected some of {list(MODES)}")
        check_modes("modes", self.modes)
        check_augment(self.aug, self.aug_by_mode, self.modes)
        if self.size % 8:
            raise ValueError(f"size must be a multiple of 8, got {self.size}")


@dataclass
class CurriculumConfig:
    """The vessel curriculum: teach (epochs < teach_until) -> linear weaning -> independence
    (>= wean_until). ``lambda_start = 0`` and ``scaler_start = 1`` turn the vessel priors off."""

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
class RunConfig:
    """What every training run has: identity, length, output, starting weights, optimiser.

    Subclasses set their own defaults and add their sections; ``load`` reads any of them.
    """

    name: str = "run"
    seed: int = 0
    out_dir: str = "runs/run"
    max_epochs: int = 1
    steps_per_epoch: int = 1
    max_minutes: float | None = None
    torch_threads: int = 2
    init_weights: str | None = None  # safetensors file: the whole model to start from
    export: str | None = None  # safetensors path written at the end (+ .card.json)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1 or self.max_epochs < 1:
            raise ValueError("steps_per_epoch and max_epochs must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[R], values: dict) -> R:
        """A config from a YAML mapping; unknown keys and invalid values raise ValueError
        naming the key path."""
        return _build(cls, values, "config")

    @classmethod
    def load(cls: type[R], source: R | dict | str | Path) -> R:
        """``source`` as a config of this class: a config passes through, a mapping goes
        through ``from_dict``, anything else is a YAML file's path."""
        if isinstance(source, cls):
            return source
        if isinstance(source, dict):
            return cls.from_dict(source)
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file does not exist")
        return cls.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


@dataclass
class TrainConfig(RunConfig):
    name: str = "retreg_loftr"
    out_dir: str = "runs/retreg_loftr"
    max_epochs: int = 100
    steps_per_epoch: int = 40
    val_every_epochs: int = 5
    init_backbone: str | None = None  # safetensors file: only backbone.* keys are loaded
    early_stop_start_epoch: int = 100
    early_stop_patience: int = 5
    tensorboard: bool = False  # also log to TensorBoard (out_dir/tb; needs retreg[tensorboard])
    model: LoftrConfig = field(default_factory=LoftrConfig)
    data: DataConfig = field(default_factory=DataConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_weights and self.init_backbone:
            raise ValueError("init_weights (whole model) and init_backbone (backbone only) "
                             "exclude each other; give one")

    def augment(self, mode: str | None = None) -> AugmentConfig:
        """The augmentation of training and validation pairs of ``mode``: ``data.aug`` with
        ``data.aug_by_mode[mode]`` on top, so one mode can keep its geometry while the others
        change (stage 5 kept cfocta's CF clip, which holds the whole OCTA field, unshifted)."""
        return augment_for(self.data.aug, self.data.aug_by_mode, mode)


def _build(cls, values: dict, where: str):
    """A config dataclass from a YAML mapping, recursing into nested dataclasses; unknown keys,
    wrong shapes and the dataclasses' own checks raise ValueError naming the key path."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    check_keys(where, values, {f.name for f in fields(cls)})
    defaults = cls()
    kwargs = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        if isinstance(default, LoftrConfig):
            kwargs[name] = LoftrConfig.from_dict(value)
        elif is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
