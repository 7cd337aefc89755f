"""Reading checkpoints safely: ``torch.load(weights_only=True)`` only, with the few non-tensor types that real
tracker checkpoints pickle allowed by name, and loading that names every key that does not fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

def _safe_numpy_globals() -> list:
    """What published checkpoints (NanoTrack's among them) pickle besides tensors: numpy scalars, under numpy
    1's module name, and their dtypes."""
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def _listed(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict of a checkpoint file: ``{'state_dict': ...}`` as pysot-style trainers save it, or bare."""
    with torch.serialization.safe_globals(_safe_numpy_globals()):
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    return checkpoint.get("state_dict", checkpoint)


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
