"""The model zoo: every family's presets by name, and a builder for presets and configs alike."""

from __future__ import annotations

from . import nanotrack, siamfc, siamrpn
from .base import ModelConfig, SiameseModel

FAMILY_CLASSES: dict[str, type[SiameseModel]] = {
    "siamfc": siamfc.SiamFC,
    "siamrpn": siamrpn.SiamRPN,
    "nanotrack": nanotrack.NanoTrack,
}
PRESETS: dict[str, ModelConfig] = {**siamfc.PRESETS, **siamrpn.PRESETS, **nanotrack.PRESETS}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; `edgetrack models` lists them: {', '.join(PRESETS)}") from None


def build_model(spec: str | ModelConfig) -> SiameseModel:
    """A freshly initialised model of a preset name or a config."""
    config = preset(spec) if isinstance(spec, str) else spec
    return FAMILY_CLASSES[config.family](config)


__all__ = ["FAMILY_CLASSES", "PRESETS", "ModelConfig", "SiameseModel", "build_model", "preset"]
