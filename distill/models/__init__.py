"""The model zoo: every family's torch model and presets, and a builder for presets and configs alike.

A family's torch model is registered for its spec (``edgetrack.runtime.families``), so a model is built from
whatever family its config names; ``register_model`` adds a family's model and presets from any module.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgetrack.runtime.families.base import FamilySpec
from edgetrack.runtime.families.nanotrack import NANOTRACK
from edgetrack.runtime.families.siamfc import SIAMFC
from edgetrack.runtime.families.siamrpn import SIAMRPN

from . import nanotrack, siamfc, siamrpn
from .base import ModelConfig, SiameseModel

#: Each family's torch model, by its spec.
FAMILY_CLASSES: dict[FamilySpec, type[SiameseModel]] = {}
PRESETS: dict[str, ModelConfig] = {}


def register_model(spec: FamilySpec, model: type[SiameseModel], presets: Iterable[ModelConfig] = ()) -> None:
    """Build ``spec``'s family with ``model``, and know ``presets`` by name."""
    FAMILY_CLASSES[spec] = model
    PRESETS.update((config.name, config) for config in presets)


register_model(SIAMFC, siamfc.SiamFC, siamfc.PRESETS.values())
register_model(SIAMRPN, siamrpn.SiamRPN, siamrpn.PRESETS.values())
register_model(NANOTRACK, nanotrack.NanoTrack, nanotrack.PRESETS.values())


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; `edgetrack models` lists them: {', '.join(PRESETS)}") from None


def build_model(spec: str | ModelConfig) -> SiameseModel:
    """A freshly initialised model of a preset name or a config."""
    config = preset(spec) if isinstance(spec, str) else spec
    model = FAMILY_CLASSES.get(config.spec)
    if model is None:
        raise ValueError(f"no torch model is registered for the {config.family} family (edgetrack.distill.models.register_model)")
    return model(config)


__all__ = ["FAMILY_CLASSES", "PRESETS", "ModelConfig", "SiameseModel", "build_model", "preset", "register_model"]
