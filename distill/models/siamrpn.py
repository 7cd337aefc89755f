"""SiamRPN as DaSiamRPN builds it (foolwood/DaSiamRPN ``net.py``): an AlexNet feature extractor without groups and
an up-channel RPN head, 127/271 crops, stride 8, 5 anchors, a 19x19 map.

``siamrpn-big`` is DaSiamRPN's SiamRPNBIG (192-512-768-768-512, RPN width 512: 90.4M parameters, the paper's
teacher) and ``siamrpn-alexnet`` its SiamRPNvot/otb (96-256-384-384-256, RPN width 256). DaSiamRPN makes them with
one width multiplier, so here they are the same class at other widths, as teachers and students are.

The template branch turns the template features into 2K classification and 4K regression kernels (``conv_cls1``,
``conv_r1``), which the search model takes as inputs ``zf_cls`` and ``zf_loc``. ``upchannel`` correlates them with
the search features as DaSiamRPN does, by a convolution whose weights are the kernels; ``pixelwise``, the students'
default, computes the same correlation by MatMul (``KernelXCorr``), which every TensorRT version imports. The two
forms share every parameter, so a student keeps its teacher's head and a trained model can be exported either way.

Outputs are in pysot's layout, anchor-major as ``runtime.geometry.anchor_grid``: ``cls (B, 2K, S, S)`` with
background logits in channels [0:K] and foreground in [K:2K]; ``loc (B, 4K, S, S)`` with dx, dy, dw, dh in
consecutive blocks of K channels.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from edgetrack.runtime.bundle import Geometry, Hyper, InputLayout
from edgetrack.runtime.families.siamrpn import AnchorLayout

from .base import ModelConfig, SiameseModel
from .alexnet import LAYERS, STRIDE, alexnet_feature_size, check_geometry, layer_groups, score_size, student
from .correlation import KernelXCorr

#: Width groups: the AlexNet layers, then the channels of the classification and regression correlations.
GROUPS = (*LAYERS, "cls", "loc")


class TemplateKernels(nn.Module):
    """DaSiamRPN's ``conv_cls1`` / ``conv_r1``: template features ``(B, C, h, w)`` -> ``kernels`` correlation kernels
    of ``width`` channels, ``(B, kernels*width, h-2, w-2)`` with kernel ``j`` in channels ``[j*width:(j+1)*width]``.

    The weight is stored as ``(kernels, width, C, 3, 3)``, not as one convolution's ``(kernels*width, C, 3, 3)``, so
    that the kernel width is a dimension of its own: the width group it shares with the search features it meets.
    """

    def __init__(self, source: int, kernels: int, width: int):
        super().__init__()
        bound = 1.0 / math.sqrt(source * 9)  # nn.Conv2d's default initialisation
        self.weight = nn.Parameter(torch.empty(kernels, width, source, 3, 3).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(kernels, width).uniform_(-bound, bound))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, self.weight.flatten(0, 1), self.bias.flatten())


def _layer(source: int, out: int, kernel: int, stride: int = 1, relu: bool = True, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(source, out, kernel, stride), nn.BatchNorm2d(out)]
    layers += [nn.ReLU()] if relu else []
    layers += [nn.MaxPool2d(3, 2)] if pool else []
    return nn.Sequential(*layers)


class SiamRPN(SiameseModel):
    """``template(z)`` -> ``(zf_cls, zf_loc)``; ``track(x, zf_cls, zf_loc)`` -> ``{"cls", "loc"}``."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        if config.correlation not in ("upchannel", "pixelwise"):
            raise ValueError(f"{config.name}: a siamrpn correlates by upchannel or pixelwise, not {config.correlation}")
        check_geometry(config)
        w1, w2, w3, w4, w5, cls, loc = (config.widths[group] for group in GROUPS)
        k = config.geometry.extension.num_anchors
        self.features = nn.Sequential(
            OrderedDict(
                conv1=_layer(3, w1, 11, stride=2, pool=True),
                conv2=_layer(w1, w2, 5, pool=True),
                conv3=_layer(w2, w3, 3),
                conv4=_layer(w3, w4, 3),
                conv5=_layer(w4, w5, 3, relu=False),
            )
        )
        self.conv_cls1 = TemplateKernels(w5, 2 * k, cls)
        self.conv_r1 = TemplateKernels(w5, 4 * k, loc)
        self.conv_cls2 = nn.Conv2d(w5, cls, 3)
        self.conv_r2 = nn.Conv2d(w5, loc, 3)
        self.regress_adjust = nn.Conv2d(4 * k, 4 * k, 1)
        kernel_size = alexnet_feature_size(config.geometry.exemplar_size) - 2
        matmul = config.correlation == "pixelwise"
        self.cls_xcorr = KernelXCorr(2 * k, kernel_size, matmul)
        self.loc_xcorr = KernelXCorr(4 * k, kernel_size, matmul)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        return self.features(image)

    def template_head(self, zfeat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv_cls1(zfeat), self.conv_r1(zfeat)

    def head(self, xf: torch.Tensor, zf_cls: torch.Tensor, zf_loc: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "cls": self.cls_xcorr(self.conv_cls2(xf), zf_cls),
            "loc": self.regress_adjust(self.loc_xcorr(self.conv_r2(xf), zf_loc)),
        }

    def channel_groups(self) -> dict[str, tuple[str | None, ...]]:
        groups = layer_groups(
            self, {f"features.{layer}": (layer, LAYERS[i - 1] if i else None) for i, layer in enumerate(LAYERS)}
        )
        groups |= layer_groups(self, {"conv_cls2": ("cls", "conv5"), "conv_r2": ("loc", "conv5"), "regress_adjust": (None, None)})
        for kernels, group in (("conv_cls1", "cls"), ("conv_r1", "loc")):
            groups[f"{kernels}.weight"] = (None, group, "conv5", None, None)
            groups[f"{kernels}.bias"] = (None, group)
        return groups


def _teacher(name: str, widths: tuple[int, ...], hyper: Hyper) -> ModelConfig:
    return ModelConfig(
        name=name,
        family="siamrpn",
        widths=dict(zip(GROUPS, widths)),
        geometry=Geometry(
            exemplar_size=127,
            # DaSiamRPN's search size for both model sizes (287 only for tiny targets, which a bundle cannot switch to),
            # so that every student can be distilled from either teacher.
            instance_size=271,
            stride=STRIDE,
            score_size=score_size(127, 271),
            context_amount=0.5,
            extension=AnchorLayout(ratios=(0.33, 0.5, 1.0, 2.0, 3.0), scales=(8.0,)),
        ),
        hyper=hyper,
        # DaSiamRPN feeds cv2's BGR crops as 0-255 floats, unnormalised.
        input=InputLayout(color="BGR"),
        correlation="upchannel",
        template_outputs=("zf_cls", "zf_loc"),
    )


# The score is the foreground softmax; 0.85 is pysot's TRACK.CONFIDENCE_LOW, below which its long-term SiamRPN
# declares the target lost and widens the search.
SIAMRPN_BIG = _teacher(
    "siamrpn-big",
    (192, 512, 768, 768, 512, 512, 512),
    Hyper(penalty_k=0.055, window_influence=0.42, lr=0.295, lost_threshold=0.85),
)
# SiamRPNotb's hyper-parameters rather than SiamRPNvot's: edgetrack evaluates one-pass, as OTB does.
SIAMRPN_ALEXNET = _teacher(
    "siamrpn-alexnet",
    (96, 256, 384, 384, 256, 256, 256),
    Hyper(penalty_k=0.22, window_influence=0.40, lr=0.30, lost_threshold=0.85),
)

PRESETS: dict[str, ModelConfig] = {
    config.name: config
    for teacher in (SIAMRPN_BIG, SIAMRPN_ALEXNET)
    for config in (teacher, student(teacher, 0.5), student(teacher, 0.25))
}
