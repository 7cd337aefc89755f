"""The one typed place for a training run's settings, and the reading of ``--config FILE.yaml`` into it.

A YAML file mirrors the dataclasses: top-level keys are ``TrainConfig`` fields, nested sections are the nested
configs. Unknown keys are an error that names the key and the keys allowed, so a typo never trains silently with
a default.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from edgetrack.runtime.errors import InputError

from .data.pairs import AugmentConfig, PairConfig
from .losses import LossConfig

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "log")
STUDENT_INITS = ("shrink", "random")


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    #: the learning rate ramps linearly from ``lr * warmup_factor`` to ``lr`` over the first steps
    warmup_steps: int = 100
    warmup_factor: float = 0.1
    #: after warm-up: cosine or log-linear decay to ``final_lr``
    schedule: str = "cosine"
    final_lr: float = 1e-4
    #: the gradient norm of each student is clipped to this (0: no clipping)
    clip_grad: float = 10.0
    #: mixed precision; applies on CUDA only
    amp: bool = True


@dataclass(frozen=True)
class DataConfig:
    #: data specs: ``synthetic[:SEQUENCES]``, ``unlabeled:VIDEO_OR_FOLDER``, or ``FORMAT:PATH`` with FORMAT one of
    #: got10k, lasot, trackingnet, vid, coco
    sources: tuple[str, ...] = ("synthetic",)
    pairs: PairConfig = field(default_factory=PairConfig)
    #: a teacher-labelled pair counts for the ground-truth losses only if the teacher's score reaches this
    teacher_confidence: float = 0.6
    #: DataLoader worker processes (0: load in the training process)
    workers: int = 1


@dataclass(frozen=True)
class ValidationConfig:
    #: sequence folders or videos with ground truth (as ``edgetrack eval`` reads them); empty: the synthetic world
    sequences: tuple[str, ...] = ()
    #: how many synthetic sequences to validate on when ``sequences`` is empty
    synthetic: int = 4
    #: validate every this many epochs (0: never)
    every: int = 1


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    steps_per_epoch: int = 200
    #: pairs per step and per process
    batch_size: int = 16
    seed: int = 0
    #: students of a distillation start as their teacher, shrunk (``shrink``), or from scratch (``random``)
    student_init: str = "shrink"
    #: students after the first are perturbed by this relative noise, so that identical students can still differ
    student_noise: float = 0.02
    log_every: int = 10
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        checks = (
            (self.optim.optimizer in OPTIMIZERS, f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.optim.schedule in SCHEDULES, f"optim.schedule must be one of {', '.join(SCHEDULES)}"),
            (self.student_init in STUDENT_INITS, f"student_init must be one of {', '.join(STUDENT_INITS)}"),
            (self.epochs >= 1 and self.steps_per_epoch >= 1 and self.batch_size >= 1, "epochs, steps_per_epoch and batch_size must be at least 1"),
        )
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def from_dict(cls, raw: typing.Mapping, where: str = "config"):
    """Build dataclass ``cls`` from a nested mapping, checking every key against its fields."""
    if not isinstance(raw, typing.Mapping):
        raise InputError(f"{where} must be a mapping of settings, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InputError(f"{where}: unknown setting {unknown[0]!r} (allowed: {', '.join(sorted(names))})")
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(hint, value, f"{where}.{name}")
        elif typing.get_origin(hint) is tuple:
            values[name] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        else:
            values[name] = value
    return cls(**values)


def load_config(path: Path | None, **overrides) -> TrainConfig:
    """The config of ``path`` (YAML) or the defaults, with the command line's ``overrides`` (None: not given) on top.

    An override key may name a nested field with dots, e.g. ``"optim.lr"``.
    """
    raw: dict = {}
    if path is not None:
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise InputError(f"cannot read config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise InputError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise InputError(f"config {path} must be a mapping of settings at its top level")
    for key, value in overrides.items():
        if value is None:
            continue
        section = raw
        *parents, leaf = key.split(".")
        for parent in parents:
            section = section.setdefault(parent, {})
        section[leaf] = value
    return from_dict(TrainConfig, raw, str(path) if path else "config")


def config_dict(config) -> dict:
    """A plain, picklable-by-value copy (lists, dicts, numbers, strings) for checkpoints and logs."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


__all__ = ["AugmentConfig", "DataConfig", "LossConfig", "OptimConfig", "PairConfig", "TrainConfig", "ValidationConfig", "load_config"]
