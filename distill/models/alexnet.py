"""AlexNet arithmetic shared by the SiamFC and SiamRPN families: layer names, stride, feature and score sizes,
the width groups of its convolutions, and how a student preset is derived from a teacher."""

from __future__ import annotations

import dataclasses

from torch import nn

from .base import ModelConfig, scaled_width

#: The AlexNet layers, in order; each is also the width group of its output channels.
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
#: AlexNet's total stride: one score-map cell is 8 crop pixels.
STRIDE = 8


def alexnet_feature_size(image: int) -> int:
    """Side of the (unpadded) AlexNet feature map of a square crop: conv 11/2, pool 3/2, conv 5, pool 3/2, 3 x conv 3."""
    size = (image - 11) // 2 + 1
    size = (size - 3) // 2 + 1
    size = (size - 4 - 3) // 2 + 1
    return size - 6


def score_size(exemplar: int, instance: int) -> int:
    """Side of the score map of a template slid over a search region (SiamRPN's heads trim both branches alike)."""
    return alexnet_feature_size(instance) - alexnet_feature_size(exemplar) + 1


def check_geometry(config: ModelConfig) -> None:
    """The score map the runtime decodes must be the one the network computes."""
    g = config.geometry
    want = score_size(g.exemplar_size, g.instance_size)
    if g.stride != STRIDE or g.score_size != want:
        raise ValueError(
            f"{config.name}: {g.exemplar_size}/{g.instance_size} crops give a {want}x{want} score map at stride {STRIDE}, "
            f"but the geometry says {g.score_size}x{g.score_size} at stride {g.stride}"
        )


def layer_groups(model: nn.Module, layers: dict[str, tuple[str | None, str | None]]) -> dict[str, tuple[str | None, ...]]:
    """``channel_groups`` entries of every convolution and BatchNorm below the named submodules, given for each
    submodule the width group it writes and the one it reads (None: not a width)."""
    groups: dict[str, tuple[str | None, ...]] = {}
    for top, (out, source) in layers.items():
        for name, module in model.get_submodule(top).named_modules(prefix=top):
            if isinstance(module, nn.Conv2d):
                groups[f"{name}.weight"] = (out, source, None, None)
                if module.bias is not None:
                    groups[f"{name}.bias"] = (out,)
            elif isinstance(module, nn.BatchNorm2d):
                groups.update({f"{name}.{p}": (out,) for p in ("weight", "bias", "running_mean", "running_var")})
                groups[f"{name}.num_batches_tracked"] = ()
    return groups


def student(teacher: ModelConfig, fraction: float) -> ModelConfig:
    """``teacher`` at ``fraction`` of every width, named ``<teacher>-s<percent>``, with the export-friendly correlation."""
    widths = {group: scaled_width(width, fraction) for group, width in teacher.widths.items()}
    config = teacher.with_widths(widths, name=f"{teacher.name}-s{round(fraction * 100)}")
    return dataclasses.replace(config, teacher=teacher.name, correlation="pixelwise")
