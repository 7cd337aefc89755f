"""Reading and writing checkpoints safely: ``torch.load(weights_only=True)`` only, with the few non-tensor types
that real tracker checkpoints pickle allowed by name, and loading that names every key that does not fit.

Models trained here travel with a *record* of what they are (``model_record``): the zoo preset they derive from,
their name and their widths. A weights file ``{"model": record, "state_dict": ...}`` and a training checkpoint
(``{"students": [{"record": ..., "state_dict": ...}, ...]}``) can therefore be exported without naming a preset.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
import warnings
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
