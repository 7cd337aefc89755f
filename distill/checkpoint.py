"""Reading and writing checkpoints safely: ``torch.load(weights_only=True)`` only, with the few non-tensor types
that real tracker checkpoints pickle allowed by name, and loading that names every key that does not fit.

Models trained here travel with a *record* of what they are (``ModelRecord``): the zoo preset they derive from,
their name and their widths. A weights file ``{"model": record, "state_dict": ...}`` and a training checkpoint
(``{"students": [{"record": ..., "state_dict": ...}, ...]}``) can therefore be exported without naming a preset.

The files are typed here (``ModelRecord``, ``ModelWeights``, ``EpochRecord``, ``StudentState``,
``TrainingCheckpoint``) and written as plain dicts of tensors, numbers and strings, the layout files have always had:
every one loads with ``weights_only=True``, and a file written before these types reads into them.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetrack.runtime.errors import InputError
from edgetrack.runtime.files import write_atomic

from .models import PRESETS, ModelConfig, SiameseModel, build_model, preset


def _safe_numpy_globals() -> list:
    """What published checkpoints (NanoTrack's among them) pickle besides tensors: numpy scalars, under numpy
    1's module name, and their dtypes."""
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def load_file(path: str | Path) -> dict:
    """A checkpoint file's content, unpickled with ``weights_only=True``; a file that is not one, or that pickles
    more than tensors and plain values, is an InputError in one line (a missing file stays FileNotFoundError)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_safe_numpy_globals()), warnings.catch_warnings():
            # A pickle of protocol 4 or 5 is not one torch.save writes; the error below says what the file is.
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            content = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError as exc:
        if _pickled(path):
            raise InputError(_unsafe(path, str(exc))) from None
        raise InputError(_corrupt(path)) from None
    # torch.load reports a damaged file with whatever its parsers hit (EOFError, KeyError, struct.error...).
    except Exception:
        raise InputError(_corrupt(path)) from None
    if not isinstance(content, dict):
        raise InputError(f"{path} holds a {type(content).__name__}, not a checkpoint: save a dict, e.g. torch.save(model.state_dict(), PATH)")
    return content


def _pickled(path: Path) -> bool:
    """Whether the file starts as a zip archive (torch.save's format) or a pickle does."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == pickle.PROTO[0] and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL)


def _unsafe(path: Path, reason: str) -> str:
    found = re.search(r"GLOBAL (\S+)", reason)
    what = f"it pickles {found.group(1)}, which" if found else "it pickles code or objects that"
    return (
        f"not a safe checkpoint (weights only): {path}; {what} edgetrack does not load: "
        "where you trust the file, re-save its state_dict with torch.save(model.state_dict(), PATH)"
    )


def _corrupt(path: Path) -> str:
    size = path.stat().st_size
    what = "the file is empty" if not size else f"torch.load cannot read its {size} bytes (truncated, or never a checkpoint)"
    return f"{path} is not a PyTorch checkpoint (empty or corrupt): {what}; save or download it again"


def save_file(path: str | Path, content: dict) -> None:
    """Write atomically: a crash or a signal mid-write leaves the previous file, never half of a new one."""
    buffer = io.BytesIO()
    torch.save(content, buffer)
    write_atomic(Path(path), buffer.getvalue())


CHECKPOINT_FORMAT = "edgetrack-train/1"


@dataclass(frozen=True)
class ModelRecord:
    """What a trained model is, in plain values: the zoo preset it derives from, its name, its teacher and widths,
    and the family options it sets beyond the preset's (NanoTrack's ``template_front``)."""

    name: str
    base: str
    teacher: str | None
    widths: dict[str, int]
    options: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of(cls, config: ModelConfig) -> ModelRecord:
        base = config.teacher if config.teacher in PRESETS else config.name
        if base not in PRESETS:
            raise ValueError(f"{config.name} derives from no zoo preset, so it cannot be recorded")
        preset_options = PRESETS[base].options
        options = {k: v for k, v in config.options.items() if preset_options.get(k) != v}
        return cls(config.name, base, config.teacher, dict(config.widths), options)

    @classmethod
    def from_dict(cls, raw: dict) -> ModelRecord:
        """A record as files and YAML hold it; ``teacher`` and ``options`` may be absent."""
        return cls(raw["name"], raw["base"], raw.get("teacher"), dict(raw["widths"]), dict(raw.get("options") or {}))

    def as_dict(self) -> dict:
        record = {"name": self.name, "base": self.base, "teacher": self.teacher, "widths": dict(self.widths)}
        return record | ({"options": dict(self.options)} if self.options else {})

    def build(self) -> SiameseModel:
        """The model this record describes, freshly initialised."""
        config = preset(self.base).with_widths(self.widths, name=self.name)
        return build_model(dataclasses.replace(config, teacher=self.teacher, options={**config.options, **self.options}))


@dataclass(frozen=True)
class ModelWeights:
    """A recorded model and its weights: a weights file ``{"model": record, "state_dict": ...}``."""

    record: ModelRecord
    state_dict: dict[str, torch.Tensor]

    @classmethod
    def of(cls, model: SiameseModel) -> ModelWeights:
        return cls(ModelRecord.of(model.config), model.state_dict())

    def as_dict(self) -> dict:
        return {"model": self.record.as_dict(), "state_dict": self.state_dict}


@dataclass(frozen=True)
class StudentState:
    """One student of a training checkpoint: its record, weights, optimiser and learning-rate scheduler."""

    weights: ModelWeights
    optimizer: dict
    scheduler: dict

    @classmethod
    def from_dict(cls, raw: dict) -> StudentState:
        return cls(ModelWeights(ModelRecord.from_dict(raw["record"]), raw["state_dict"]), raw["optimizer"], raw["scheduler"])

    def as_dict(self) -> dict:
        return {"record": self.weights.record.as_dict(), "state_dict": self.weights.state_dict, "optimizer": self.optimizer, "scheduler": self.scheduler}


@dataclass(frozen=True)
class EpochRecord:
    """What an epoch ended with: its step, the pairs redrawn so far, and each validated student's scores by name."""

    epoch: int
    step: int
    #: None in the records of checkpoints written before the count was kept
    redrawn_pairs: int | None
    #: validation scores (``auc``, ...) by student name; empty for an epoch that was not validated
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict) -> EpochRecord:
        """The flat layout of ``history.json`` and checkpoints: the counts, then one key per validated student."""
        scores = {k: v for k, v in raw.items() if k not in ("epoch", "step", "redrawn_pairs")}
        return cls(raw["epoch"], raw["step"], raw.get("redrawn_pairs"), scores)

    def as_dict(self) -> dict:
        redrawn = {} if self.redrawn_pairs is None else {"redrawn_pairs": self.redrawn_pairs}
        return {"epoch": self.epoch, "step": self.step, **redrawn, **self.scores}


@dataclass(frozen=True)
class TrainingCheckpoint:
    """A training run at a step: all that exact resumption needs (``last.pt``), and what export reads from it."""

    step: int
    #: ``config_dict`` of the run's ``TrainConfig``
    config: dict
    #: the teacher as ``NAME:CKPT``; None for students trained alone
    teacher: str | None
    student_specs: tuple[str, ...]
    students: tuple[StudentState, ...]
    scaler: dict
    #: ``torch.get_rng_state()``
    rng: torch.Tensor
    history: tuple[EpochRecord, ...]
    #: ``epoch``, ``steps`` (``checkpoint_every`` inside an epoch) or ``signal``
    saved_because: str

    @classmethod
    def from_dict(cls, raw: dict, path: Path) -> TrainingCheckpoint:
        """The checkpoint ``load_file(path)`` read; anything but a training checkpoint is an InputError."""
        if raw.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path} is not an edgetrack training checkpoint")
        try:
            return cls(
                step=raw["step"],
                config=raw["config"],
                teacher=raw["teacher"],
                student_specs=tuple(raw["student_specs"]),
                students=tuple(StudentState.from_dict(s) for s in raw["students"]),
                scaler=raw["scaler"],
                rng=raw["rng"]["torch"],
                history=tuple(EpochRecord.from_dict(r) for r in raw["history"]),
                saved_because=raw.get("saved_because", "epoch"),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"{path} is a damaged training checkpoint: it lacks {exc}") from None

    def as_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": self.config,
            "teacher": self.teacher,
            "student_specs": list(self.student_specs),
            "students": [s.as_dict() for s in self.students],
            "scaler": self.scaler,
            "rng": {"torch": self.rng},
            "history": [r.as_dict() for r in self.history],
            "saved_because": self.saved_because,
        }


def model_record(config: ModelConfig) -> dict:
    """What a trained model is, in plain values (``ModelRecord``'s dict): rebuilt by ``model_from_record``."""
    return ModelRecord.of(config).as_dict()


def model_from_record(record: dict) -> SiameseModel:
    """The model a record (as files and YAML hold it) describes, freshly initialised."""
    return ModelRecord.from_dict(record).build()


def recorded_models(content: dict) -> dict[str, ModelWeights]:
    """Every model a file carries, with its weights, by name: none for a bare or published checkpoint."""
    if "model" in content and "state_dict" in content:
        found = [ModelWeights(ModelRecord.from_dict(content["model"]), content["state_dict"])]
    else:
        found = [ModelWeights(ModelRecord.from_dict(entry["record"]), entry["state_dict"]) for entry in content.get("students", [])]
    return {weights.record.name: weights for weights in found}


def _listed(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict of a checkpoint file: ``{'state_dict': ...}`` as pysot-style trainers save it, or bare."""
    checkpoint = load_file(path)
    return checkpoint.get("state_dict", checkpoint)


def load_model(name: str | None, path: str | Path | None) -> SiameseModel:
    """A model by preset name with the weights of ``path``, or the model a recorded file describes.

    ``name`` may be omitted for a file that carries exactly one model, and picks one of a training checkpoint's.
    """
    if path is None:
        if name is None:
            raise ValueError("give a model name, or weights that record their model")
        return build_model(name)
    content = load_file(path)
    recorded = recorded_models(content)
    if not recorded:
        if name is None:
            raise ValueError(f"{path} does not say which model it holds: give the model's preset name too")
        return load_pretrained(build_model(name), path)
    if name is None and len(recorded) > 1:
        raise ValueError(f"{path} holds {len(recorded)} models ({', '.join(recorded)}): name the one to use")
    key = name if name is not None else next(iter(recorded))
    if key not in recorded:
        raise ValueError(f"{path} holds {', '.join(recorded)}, not {key}")
    weights = recorded[key]
    model = weights.record.build()
    model.load_state_dict(weights.state_dict, strict=True)
    return model


def load_pretrained(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint into ``model`` with keys and shapes exact; what does not fit is named in one line."""
    state = read_checkpoint(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        problems = [
            f"{what} {_listed(keys)}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("mismatched", mismatched))
            if keys
        ]
        raise ValueError(f"{path} does not fit {name}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model
