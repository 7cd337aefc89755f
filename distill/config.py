"""The one typed place for a training run's settings, and the reading of ``--config FILE.yaml`` into it.

A YAML file mirrors the dataclasses: top-level keys are ``TrainConfig`` fields, nested sections are the nested
configs. Unknown keys are an error that names the key and the keys allowed, so a typo never trains silently with
a default.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

from edgetrack import defaults
from edgetrack.runtime.errors import InputError

from .data.pairs import AugmentConfig, PairConfig
from .losses import LossConfig

OPTIMIZERS = defaults.OPTIMIZERS
SCHEDULES = ("cosine", "log")
STUDENT_INITS = ("shrink", "random")
BATCHNORM_MODES = ("batch", "frozen")
#: The least value of each numeric setting with an obvious floor (``optim.lr`` must be above 0).
LEAST = {
    "epochs": 1,
    "steps_per_epoch": 1,
    "batch_size": 1,
    "batchnorm_calibration": 0,
    "shrink_refit": 0,
    "log_every": 1,
    "checkpoint_every": 0,
    "optim.momentum": 0,
    "optim.weight_decay": 0,
    "optim.warmup_steps": 0,
    "optim.final_lr": 0,
    "optim.clip_grad": 0,
    "data.workers": 0,
    "validation.synthetic": 0,
    "validation.every": 0,
}
#: What a YAML value of each field type must be, as a config error says it.
KINDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = defaults.OPTIMIZER
    lr: float = defaults.LR
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
    #: DataLoader worker processes (0: make pairs in the training process, the fastest on 2 CPU cores, where a worker
    #: competes with torch's threads; on a GPU, give it a few)
    workers: int = defaults.WORKERS


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
    epochs: int = defaults.EPOCHS
    steps_per_epoch: int = defaults.STEPS_PER_EPOCH
    #: pairs per step and per process
    batch_size: int = defaults.BATCH_SIZE
    seed: int = defaults.SEED
    #: students of a distillation start as their teacher, shrunk (``shrink``), or from scratch (``random``)
    student_init: str = "shrink"
    #: a fresh student shrunk from its teacher (or from a previous stage) has the layers that read a pruned channel
    #: refitted by least squares to its source's outputs on this many batches (``shrink.refit``); 0: sliced only.
    #: A refitted student keeps its source's BatchNorm statistics (no ``batchnorm_calibration``)
    shrink_refit: int = 0
    #: students after the first are perturbed by this relative noise, so that identical students can still differ
    student_noise: float = 0.02
    #: BatchNorm while training: ``batch`` normalises by each batch's statistics and updates the running ones;
    #: ``frozen`` normalises by the running statistics, as inference does, so that the losses score the function
    #: that is deployed (a copy of the teacher then has no teacher-student loss at all). A fresh run first
    #: re-estimates the students' running statistics on ``batchnorm_calibration`` batches: shrinking breaks them.
    batchnorm: str = "batch"
    batchnorm_calibration: int = 16
    log_every: int = 10
    #: also write ``last.pt`` every this many steps inside an epoch, so that a run killed without warning (SIGKILL,
    #: a lost session, power) resumes losing at most these steps; 0: only at epoch ends and on stop signals
    checkpoint_every: int = defaults.CHECKPOINT_EVERY
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        for key, allowed in (("optim.optimizer", OPTIMIZERS), ("optim.schedule", SCHEDULES), ("student_init", STUDENT_INITS), ("batchnorm", BATCHNORM_MODES)):
            value = attrgetter(key)(self)
            if value not in allowed:
                raise InputError(f"config key {key} must be one of {', '.join(allowed)}, got {value!r}")
        for key, least in LEAST.items():
            value = attrgetter(key)(self)
            if not value >= least:
                raise InputError(f"config key {key} must be at least {least}, got {value!r}")
        if not 0 < self.optim.lr < math.inf:
            raise InputError(f"config key optim.lr must be a finite number above 0, got {self.optim.lr!r}")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def from_dict(cls, raw: typing.Mapping, where: str = "config", prefix: str = ""):
    """Build dataclass ``cls`` from a nested mapping, checking every key against its fields and every value
    against its field's type; ``prefix`` is the dotted key of ``cls`` in the whole config, for the messages."""
    if not isinstance(raw, typing.Mapping):
        raise InputError(f"{where} must be a mapping of settings, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InputError(f"{where}: unknown setting {unknown[0]!r} (allowed: {', '.join(sorted(names))})")
    values = {}
    for name, value in raw.items():
        hint, key = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(hint, value, f"{where}.{name}", f"{key}.")
        elif typing.get_origin(hint) is tuple:
            values[name] = _typed_tuple(typing.get_args(hint)[0], value, key)
        else:
            values[name] = _typed(hint, value, key)
    return cls(**values)


def _typed(hint: type, value, key: str):
    """``value`` as a field of type ``hint`` holds it (an integer as a float for a float field), or an error."""
    if hint is float and isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if hint is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise InputError(f"config key {key} must be {KINDS[hint]}, got {value!r}")


def _typed_tuple(item: type, value, key: str) -> tuple:
    """A list setting; a single value stands for a list of one."""
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    try:
        return tuple(_typed(item, v, key) for v in items)
    except InputError:
        raise InputError(f"config key {key} must be {KINDS[item]} or a list of them, got {value!r}") from None


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
