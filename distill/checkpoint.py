"""Reading and writing checkpoints safely: ``torch.load(weights_only=True)`` only, with the few non-tensor types
that real tracker checkpoints pickle allowed by name, and loading that names every key that does not fit.

Models trained here travel with a *record* of what they are (``model_record``): the zoo preset they derive from,
their name and their widths. A weights file ``{"model": record, "state_dict": ...}`` and a training checkpoint
(``{"students": [{"record": ..., "state_dict": ...}, ...]}``) can therefore be exported without naming a preset.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetrack.runtime.files import write_atomic

from .models import PRESETS, ModelConfig, SiameseModel, build_model, preset

def _safe_numpy_globals() -> list:
    """What published checkpoints (NanoTrack's among them) pickle besides tensors: numpy scalars, under numpy
    1's module name, and their dtypes."""
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def load_file(path: str | Path) -> dict:
    """A checkpoint file's content, unpickled with ``weights_only=True``."""
    with torch.serialization.safe_globals(_safe_numpy_globals()):
        return torch.load(Path(path), map_location="cpu", weights_only=True)


def save_file(path: str | Path, content: dict) -> None:
    """Write atomically: a crash or a signal mid-write leaves the previous file, never half of a new one."""
    buffer = io.BytesIO()
    torch.save(content, buffer)
    write_atomic(Path(path), buffer.getvalue())


def model_record(config: ModelConfig) -> dict:
    """What a trained model is, in plain values: rebuilt by ``model_from_record``."""
    base = config.teacher if config.teacher in PRESETS else config.name
    if base not in PRESETS:
        raise ValueError(f"{config.name} derives from no zoo preset, so it cannot be recorded")
    return {"name": config.name, "base": base, "teacher": config.teacher, "widths": dict(config.widths)}


def model_from_record(record: dict) -> SiameseModel:
    config = preset(record["base"]).with_widths(record["widths"], name=record["name"])
    return build_model(dataclasses.replace(config, teacher=record.get("teacher")))


def recorded_models(content: dict) -> dict[str, tuple[dict, dict]]:
    """The (record, state_dict) of every model a file carries, by name: none for a bare or published checkpoint."""
    if "model" in content and "state_dict" in content:
        return {content["model"]["name"]: (content["model"], content["state_dict"])}
    return {entry["record"]["name"]: (entry["record"], entry["state_dict"]) for entry in content.get("students", [])}


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
    recorded = recorded_models(content) if isinstance(content, dict) else {}
    if not recorded:
        if name is None:
            raise ValueError(f"{path} does not say which model it holds: give the model's preset name too")
        return load_pretrained(build_model(name), path)
    if name is None and len(recorded) > 1:
        raise ValueError(f"{path} holds {len(recorded)} models ({', '.join(recorded)}): name the one to use")
    key = name if name is not None else next(iter(recorded))
    if key not in recorded:
        raise ValueError(f"{path} holds {', '.join(recorded)}, not {key}")
    record, state = recorded[key]
    model = model_from_record(record)
    model.load_state_dict(state, strict=True)
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
