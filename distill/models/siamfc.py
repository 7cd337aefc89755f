"""SiamFC (Bertinetto et al. 2016) on the grouped AlexNet of the got10k reference (huanglianghua/siamfc-pytorch,
``AlexNetV1`` with the ``SiamFC`` head): 127/255 crops, total stride 8, a 17x17 score map scaled by 0.001.

AlexNet's grouped convolutions (groups=2 in conv2, conv4 and conv5) are built as two towers of plain convolutions:
conv1 is split by output channel, conv2, conv4 and conv5 run inside their tower, and conv3, the one layer that reads
both halves, is one convolution per (output tower, input tower), summed. That is the reference's function and
parameter count, but every dimension of every tensor is a whole width group, which the generic shrink needs: the
input dimension of a grouped convolution (half a width) is not a width group, and keeping a teacher's best channels
would move channels from one group to the other. A layer's width is therefore its channels per tower (the
reference's 96-256-384-384-256 is 48-128-192-192-128) and every positive width is valid.

The AlexNet arithmetic (``alexnet.py``) and the template-kernel correlation (``correlation.KernelXCorr``) serve
SiamRPN too.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from edgetrack.runtime.bundle import Geometry, Hyper, InputLayout
from edgetrack.runtime.families.siamfc import ScalePyramid

from .alexnet import LAYERS, STRIDE, alexnet_feature_size, check_geometry, layer_groups, score_size, student
from .base import ModelConfig, SiameseModel
from .correlation import KernelXCorr

#: The reference's fixed scale of the raw cross-correlation, which keeps the initial logits near zero.
OUT_SCALE = 0.001

def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-6, momentum=0.05)  # the reference's


class _Conv3(nn.Module):
    """One output tower of conv3, the layer that reads both towers: a convolution per input tower, summed."""

    def __init__(self, source: int, out: int):
        super().__init__()
        # One bias per output channel, as the reference's single conv3 has.
        self.convs = nn.ModuleList(nn.Conv2d(source, out, 3, bias=s == 0) for s in range(2))
        self.bn = _bn(out)

    def forward(self, towers: list[torch.Tensor]) -> torch.Tensor:
        return F.relu(self.bn(self.convs[0](towers[0]) + self.convs[1](towers[1])))


class SiamFC(SiameseModel):
    """``template(z)`` -> ``zf (B, 2*conv5, 6, 6)``; ``track(x, zf)`` -> ``{"score": (N, 1, 17, 17)}``, where a batch-1
    template serves every crop of the search pyramid.

    ``pixelwise`` correlates by MatMul (``KernelXCorr``); ``depthwise`` and ``upchannel`` both name the reference's
    convolution with the template as weight, which for one output channel they are.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        check_geometry(config)
        w1, w2, w3, w4, w5 = (config.widths[layer] for layer in LAYERS)

        def towers(make) -> nn.ModuleList:
            return nn.ModuleList(make() for _ in range(2))

        self.conv1 = towers(lambda: nn.Sequential(nn.Conv2d(3, w1, 11, 2), _bn(w1), nn.ReLU(), nn.MaxPool2d(3, 2)))
        self.conv2 = towers(lambda: nn.Sequential(nn.Conv2d(w1, w2, 5), _bn(w2), nn.ReLU(), nn.MaxPool2d(3, 2)))
        self.conv3 = towers(lambda: _Conv3(w2, w3))
        self.conv4 = towers(lambda: nn.Sequential(nn.Conv2d(w3, w4, 3), _bn(w4), nn.ReLU()))
        self.conv5 = towers(lambda: nn.Conv2d(w4, w5, 3))
        template_size = alexnet_feature_size(config.geometry.exemplar_size)
        self.xcorr = KernelXCorr(1, template_size, matmul=config.correlation == "pixelwise")

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        h = [tower(image) for tower in self.conv1]
        h = [tower(t) for tower, t in zip(self.conv2, h)]
        h = [tower(h) for tower in self.conv3]
        h = [tower(t) for tower, t in zip(self.conv4, h)]
        return torch.cat([tower(t) for tower, t in zip(self.conv5, h)], dim=1)

    def head(self, xfeat: torch.Tensor, zf: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"score": self.xcorr(xfeat, zf.expand(xfeat.size(0), -1, -1, -1)) * OUT_SCALE}

    def channel_groups(self) -> dict[str, tuple[str | None, ...]]:
        return layer_groups(self, {layer: (layer, LAYERS[i - 1] if i else None) for i, layer in enumerate(LAYERS)})


SIAMFC_ALEXNET = ModelConfig(
    name="siamfc-alexnet",
    family="siamfc",
    widths={"conv1": 48, "conv2": 128, "conv3": 192, "conv4": 192, "conv5": 128},
    geometry=Geometry(
        exemplar_size=127,
        instance_size=255,
        stride=STRIDE,
        score_size=score_size(127, 255),
        context_amount=0.5,
        extension=ScalePyramid(num_scales=3, scale_step=1.0375, upsample=16, scale_penalty=0.9745),
    ),
    # got10k's SiamFC defaults; its scale_lr is the runtime's lr. The runtime reports sigmoid(raw peak), and the raw
    # map is the logit the balanced logistic loss trains, so below 0.5 no cell of any scale is classified as target.
    hyper=Hyper(penalty_k=0.0, window_influence=0.176, lr=0.59, lost_threshold=0.5),
    # got10k reads frames with cv2 and converts them to RGB; crops go in as 0-255 floats, unnormalised.
    input=InputLayout(color="RGB"),
    correlation="depthwise",
)

PRESETS: dict[str, ModelConfig] = {
    config.name: config for config in (SIAMFC_ALEXNET, student(SIAMFC_ALEXNET, 0.5), student(SIAMFC_ALEXNET, 0.25))
}
