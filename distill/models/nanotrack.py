"""NanoTrack v1, v2 and v3 (HonglinChu/SiamTrackers) as one width-parameterised family.

Read from the published checkpoints and ONNX pairs (``../shared/data/models/nanotrack``):

- backbone: the first blocks of a MobileNetV3-small (stride 16: 127 -> 8x8, 255 -> 16x16); v1/v2 stop at the
  48-channel stage, v3 adds one 96-channel block at stride 1.
- v1 head: one pixel-wise correlation (every template position a channel, 8x8 = 64) with channel attention,
  feeding a cls tower and a bbox tower of depth-wise + point-wise units.
- v2 head: a 1x1 conv + BN on each side before the correlation, one correlation per branch, 6-unit towers.
- v3 head: per branch a pixel-wise correlation (then a 2x2 depth-wise conv: 16 -> 15) and a depth-wise
  correlation of the template's central 4x4 (padding 1: 16 -> 15), concatenated and reduced by a 1x1 conv.
- loc is ``exp`` of the last conv: ltrb distances in search-crop pixels; cls is 2-way logits.

The checkpoints also hold ``neck.downsample`` (1x1 conv + BN), which the published tracker never applies: its
ModelBuilder feeds the backbone straight into the head, and neither ONNX pair contains it (v1/v2's is 64 -> 64
and could not even read the 48-channel features). It is kept, unused, so that the real files load strictly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from edgetrack.runtime.bundle import Geometry, InputLayout
from edgetrack.runtime.nanotrack_hyper import NANOTRACK_HYPER

from . import correlation
from .base import ModelConfig, SiameseModel, scaled_width

VERSIONS = ("v1", "v2", "v3")
#: v3 correlates the template's central 4x4 depth-wise, padded by 1, so a 16x16 search map gives 15x15.
DW_TEMPLATE_SIZE = 4
DW_PADDING = 1
#: v3's pixel-wise branch meets the 15x15 depth-wise map through a 2x2 depth-wise conv without padding.
PW_FUSE_KERNEL = 2


def _block(kernel: int, stride: int, se: bool, act: str, out: str, expand: bool = True) -> dict:
    """One inverted-residual block: it adds its input back when it keeps stride 1 and its width group."""
    return {"kernel": kernel, "stride": stride, "se": se, "act": act, "expand": expand, "out": out}


# MobileNetV3-small's opening blocks as NanoTrack uses them; v3 keeps the 96-channel block at stride 1 so the
# backbone stays at stride 16.
_BLOCKS = (
    _block(3, 2, True, "relu", "stage1", expand=False),
    _block(3, 2, False, "relu", "stage2"),
    _block(3, 1, False, "relu", "stage2"),
    _block(5, 2, True, "hswish", "stage3"),
    _block(5, 1, True, "hswish", "stage3"),
    _block(5, 1, True, "hswish", "stage3"),
    _block(5, 1, True, "hswish", "stage4"),
    _block(5, 1, True, "hswish", "stage4"),
)
_BLOCK_V3 = _block(5, 1, True, "hswish", "stage5")

_ACTIVATIONS = {"relu": nn.ReLU, "hswish": nn.Hardswish}


def _tag(module: nn.Module, out: str | None, inp: str | None = None) -> nn.Module:
    """Record the width groups of a layer's output and input channels, read back by ``channel_groups``."""
    module.width_groups = (out, inp)
    return module


class _Widths:
    """The config's widths, read by group name: a group that a structure needs but the config lacks is a
    one-line error, not a KeyError from deep inside a constructor."""

    def __init__(self, widths: Mapping[str, int], name: str):
        self.widths, self.name, self.used = widths, name, []

    def __getitem__(self, group: str) -> int:
        if group not in self.widths:
            raise ValueError(f"{self.name} needs a width for group {group!r} (it has {list(self.widths)})")
        self.used.append(group)
        return int(self.widths[group])


def _conv_bn(w: _Widths, inp: str, out: str, *, bias: bool = False) -> nn.Sequential:
    """1x1 conv + BN between two width groups."""
    return nn.Sequential(
        _tag(nn.Conv2d(w[inp], w[out], 1, bias=bias), out, inp),
        _tag(nn.BatchNorm2d(w[out]), out),
    )


def _depthwise(channels: int, group: str | None, kernel: int, stride: int = 1, padding: int | None = None) -> nn.Conv2d:
    pad = (kernel - 1) // 2 if padding is None else padding
    return _tag(nn.Conv2d(channels, channels, kernel, stride, pad, groups=channels, bias=False), group)


class _SqueezeExcite(nn.Module):
    def __init__(self, w: _Widths, channels: str, hidden: str):
        super().__init__()
        self.fc = nn.Sequential(
            _tag(nn.Linear(w[channels], w[hidden]), hidden, channels),
            nn.ReLU(),
            _tag(nn.Linear(w[hidden], w[channels]), channels, hidden),
            nn.Hardsigmoid(),
        )

    def forward(self, x):
        return x * self.fc(x.mean((2, 3))).unsqueeze(-1).unsqueeze(-1)


class _InvertedResidual(nn.Module):
    def __init__(self, w: _Widths, index: int, inp: str, spec: dict):
        super().__init__()
        out, k, s = spec["out"], spec["kernel"], spec["stride"]
        act = _ACTIVATIONS[spec["act"]]
        self.residual = s == 1 and inp == out
        # Layer indices follow the checkpoint's nn.Sequential, where an absent SE is an nn.Identity.
        if spec["expand"]:
            hidden = f"block{index}.expand"
            se = _SqueezeExcite(w, hidden, f"block{index}.se") if spec["se"] else nn.Identity()
            layers = [
                *_conv_bn(w, inp, hidden),
                act(),
                _depthwise(w[hidden], hidden, k, s),
                _tag(nn.BatchNorm2d(w[hidden]), hidden),
                se,
                act(),
                *_conv_bn(w, hidden, out),
            ]
        else:
            se = _SqueezeExcite(w, inp, f"block{index}.se") if spec["se"] else nn.Identity()
            layers = [
                _depthwise(w[inp], inp, k, s),
                _tag(nn.BatchNorm2d(w[inp]), inp),
                act(),
                se,
                *_conv_bn(w, inp, out),
            ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class _Backbone(nn.Module):
    def __init__(self, w: _Widths, blocks: Iterable[dict]):
        super().__init__()
        stem = nn.Sequential(
            _tag(nn.Conv2d(3, w["stem"], 3, 2, 1, bias=False), "stem"),
            _tag(nn.BatchNorm2d(w["stem"]), "stem"),
            nn.Hardswish(),
        )
        layers, group = [stem], "stem"
        for index, spec in enumerate(blocks, start=1):
            layers.append(_InvertedResidual(w, index, group, spec))
            group = spec["out"]
        self.features = nn.Sequential(*layers)
        self.out_group = group

    def forward(self, x):
        return self.features(x)


class _ChannelAttention(nn.Module):
    """Reweights the correlation channels (one per template position) from their global average."""

    def __init__(self, positions: int):
        super().__init__()
        self.fc1 = _tag(nn.Conv2d(positions, positions, 1), None)
        self.fc2 = _tag(nn.Conv2d(positions, positions, 1), None)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class _PixelwiseBranch(nn.Module):
    """Pixel-wise correlation: ``positions`` channels, whatever the feature width. v2/v3 first adjust both
    sides with a 1x1 conv + BN into the ``adjust`` group; v3 then maps the 16x16 result onto 15x15."""

    def __init__(self, w: _Widths, features: str, positions: int, adjust: str | None, fuse: bool):
        super().__init__()
        self.CA_layer = _ChannelAttention(positions)
        self.conv_kernel = _conv_bn(w, features, adjust, bias=True) if adjust else None
        self.conv_search = _conv_bn(w, features, adjust, bias=True) if adjust else None
        self.conv = None
        if fuse:
            self.conv = nn.Sequential(
                _depthwise(positions, None, PW_FUSE_KERNEL, padding=0),
                _tag(nn.BatchNorm2d(positions), None),
                nn.ReLU6(),
                _tag(nn.Conv2d(positions, positions, 1), None),
                _tag(nn.BatchNorm2d(positions), None),
            )

    def forward(self, zf, xf):
        if self.conv_kernel is not None:
            zf, xf = self.conv_kernel(zf), self.conv_search(xf)
        out = self.CA_layer(correlation.pixelwise(zf, xf))
        return out if self.conv is None else self.conv(out)


class _DepthwiseBranch(nn.Module):
    """Depth-wise correlation with the template's central 4x4, after a 1x1 conv + BN on each side. Its
    channels join the pixel-wise ones along one axis of the reducing conv, which a single width group cannot
    describe, so their number is fixed (``options['dw_channels']``) rather than a width."""

    def __init__(self, w: _Widths, features: str, channels: int):
        super().__init__()
        self.conv_kernel = nn.Sequential(
            _tag(nn.Conv2d(w[features], channels, 1), None, features), _tag(nn.BatchNorm2d(channels), None)
        )
        self.conv_search = nn.Sequential(
            _tag(nn.Conv2d(w[features], channels, 1), None, features), _tag(nn.BatchNorm2d(channels), None)
        )

    def forward(self, zf, xf):
        start = (zf.size(-1) - DW_TEMPLATE_SIZE) // 2
        centre = zf[..., start : start + DW_TEMPLATE_SIZE, start : start + DW_TEMPLATE_SIZE]
        return correlation.depthwise(F.pad(self.conv_search(xf), (DW_PADDING,) * 4), self.conv_kernel(centre))


def _tower(w: _Widths, name: str, first: str | None, first_channels: int, kernels, v3: bool) -> nn.Sequential:
    """Depth-wise + point-wise units. v1/v2: dw, pw, BN, ReLU6. v3: dw, BN, ReLU6, pw, BN (linear)."""
    layers, group, channels = [], first, first_channels
    for i, kernel in enumerate(kernels, start=1):
        out = f"{name}.{i}"
        dw = _depthwise(channels, group, kernel)
        pw = _tag(nn.Conv2d(channels, w[out], 1, bias=False), out, group)
        if v3:
            layers += [dw, _tag(nn.BatchNorm2d(channels), group), nn.ReLU6(), pw, _tag(nn.BatchNorm2d(w[out]), out)]
        else:
            layers += [dw, pw, _tag(nn.BatchNorm2d(w[out]), out), nn.ReLU6()]
        group, channels = out, w[out]
    return nn.Sequential(*layers)


def _predictor(w: _Widths, tower: str, outputs: int) -> nn.Sequential:
    return nn.Sequential(_tag(nn.Conv2d(w[tower], outputs, 1), None, tower))


class _BanHead(nn.Module):
    """The three published heads, under the checkpoints' own module names."""

    def __init__(self, w: _Widths, options: Mapping, features: str, positions: int):
        super().__init__()
        self.version = options["version"]
        cls_k, bbox_k = options["cls_kernels"], options["bbox_kernels"]
        cls_last, bbox_last = f"cls_tower.{len(cls_k)}", f"bbox_tower.{len(bbox_k)}"
        if self.version == "v1":
            self.corr_pw = _PixelwiseBranch(w, features, positions, adjust=None, fuse=False)
            self.cls_tower = _tower(w, "cls_tower", None, positions, cls_k, v3=False)
            self.bbox_tower = _tower(w, "bbox_tower", None, positions, bbox_k, v3=False)
            self.cls_logits = _predictor(w, cls_last, 2)
        elif self.version == "v2":
            self.corr_pw_reg = _PixelwiseBranch(w, features, positions, adjust="corr_pw_reg", fuse=False)
            self.corr_pw_cls = _PixelwiseBranch(w, features, positions, adjust="corr_pw_cls", fuse=False)
            self.cls_pw_tower = _tower(w, "cls_tower", None, positions, cls_k, v3=False)
            self.bbox_pw_tower = _tower(w, "bbox_tower", None, positions, bbox_k, v3=False)
            self.cls_pred = _predictor(w, cls_last, 2)
        else:
            dw = int(options["dw_channels"])
            self.corr_dw_reg = _DepthwiseBranch(w, features, dw)
            self.corr_pw_reg = _PixelwiseBranch(w, features, positions, adjust="corr_pw_reg", fuse=True)
            self.corr_dw_cls = _DepthwiseBranch(w, features, dw)
            self.corr_pw_cls = _PixelwiseBranch(w, features, positions, adjust="corr_pw_cls", fuse=True)
            self.cls_tower = _tower(w, "cls_tower", "cls_tower.0", w["cls_tower.0"], cls_k, v3=True)
            self.bbox_tower = _tower(w, "bbox_tower", "bbox_tower.0", w["bbox_tower.0"], bbox_k, v3=True)
            self.cls_logits = _predictor(w, cls_last, 2)
            self.down_reg = nn.Sequential(_tag(nn.Conv2d(positions + dw, w["bbox_tower.0"], 1), "bbox_tower.0"))
            self.down_cls = nn.Sequential(_tag(nn.Conv2d(positions + dw, w["cls_tower.0"], 1), "cls_tower.0"))
        self.bbox_pred = _predictor(w, bbox_last, 4)

    def forward(self, zf, xf):
        if self.version == "v1":
            corr = self.corr_pw(zf, xf)
            cls = self.cls_logits(self.cls_tower(corr))
            reg = self.bbox_tower(corr)
        elif self.version == "v2":
            cls = self.cls_pred(self.cls_pw_tower(self.corr_pw_cls(zf, xf)))
            reg = self.bbox_pw_tower(self.corr_pw_reg(zf, xf))
        else:
            x_cls = self.down_cls(torch.cat((self.corr_pw_cls(zf, xf), self.corr_dw_cls(zf, xf)), 1))
            x_reg = self.down_reg(torch.cat((self.corr_pw_reg(zf, xf), self.corr_dw_reg(zf, xf)), 1))
            cls = self.cls_logits(self.cls_tower(x_cls))
            reg = self.bbox_tower(x_reg)
        return cls, torch.exp(self.bbox_pred(reg))


class _TemplateFront(nn.Sequential):
    """The first layers of the published backbone at its own widths, frozen: the template path of a student with
    ``options["template_front"]``. It never trains (no gradients, BatchNorm always in eval mode)."""

    def __init__(self, layers: Iterable[nn.Module]):
        super().__init__(*layers)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        return self


def _feature_side(size: int, blocks: Iterable[dict]) -> int:
    """Side of the backbone's output map for a ``size`` input (every stride-2 layer pads to keep (n+1)//2)."""
    for stride in (2, *(b["stride"] for b in blocks)):
        size = (size - 1) // stride + 1
    return size


class NanoTrack(SiameseModel):
    """NanoTrack at any widths. ``config.options`` holds the structure: ``version`` (head layout and module
    names), ``blocks`` (kernel, stride, SE, activation, expansion and output group of each backbone block),
    ``cls_kernels`` / ``bbox_kernels`` (one depth-wise kernel per tower unit), for v3, ``dw_channels`` and, for a
    student, ``template_front``: ``K`` gives the template path its own copy of the published backbone's first ``K``
    layers (the stem and blocks 1 to ``K - 1``) at the published widths, frozen, in front of the shared
    ``backbone.features[K:]``. The template runs once per target, so it costs nothing per frame; the search path,
    which sets the frame rate, is unchanged."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        options = config.options
        version = options.get("version")
        if version not in VERSIONS:
            raise ValueError(f"{config.name}: options['version'] must be one of {', '.join(VERSIONS)}, got {version!r}")
        # v1/v2 meet template and search only pixel-wise; v3 also convolves with template-made weights.
        wanted = "depthwise" if version == "v3" else "pixelwise"
        if config.correlation != wanted:
            raise ValueError(f"{config.name}: a NanoTrack {version} correlates {wanted}, not {config.correlation}")
        w = _Widths(config.widths, config.name)
        blocks = options["blocks"]
        side = _feature_side(config.geometry.exemplar_size, blocks)
        self.backbone = _Backbone(w, blocks)
        self.neck = nn.ModuleDict({"downsample": _conv_bn(w, "neck", "neck")})  # never applied: see the module doc
        self.ban_head = _BanHead(w, options, self.backbone.out_group, side * side)
        self.front_layers = int(options.get("template_front", 0))
        if self.front_layers:
            self.template_front = self._template_front(config, blocks)
        unused = set(config.widths) - set(w.used)
        if unused:
            raise ValueError(f"{config.name}: width groups {sorted(unused)} belong to no layer of a NanoTrack {version}")

    def _template_front(self, config: ModelConfig, blocks) -> _TemplateFront:
        layers = self.front_layers
        if not 1 <= layers < len(self.backbone.features):
            raise ValueError(f"{config.name}: template_front must be 1 to {len(self.backbone.features) - 1} layers, got {layers}")
        published = _backbone_widths(blocks)
        joint = blocks[layers - 2]["out"] if layers > 1 else "stem"
        if config.widths[joint] != published[joint]:
            raise ValueError(
                f"{config.name}: a template front of {layers} layers hands {published[joint]} channels ({joint}) to "
                f"layers of {config.widths[joint]}: keep {joint} at the published width"
            )
        return _TemplateFront(_Backbone(_Widths(published, config.name), blocks[: layers - 1]).features)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        return self.backbone(image)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.template_features(z)[0]

    def template_features(self, z: torch.Tensor, zfeat: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """With a template front the template does not go through ``embed``, so ``zfeat`` is not used."""
        if not self.front_layers:
            return super().template_features(z, zfeat)
        return (self.template_head(self.backbone.features[self.front_layers :](self.template_front(z))),)

    @property
    def copied_from_source(self) -> str | None:
        return f"its template front ({self.front_layers} layers)" if self.front_layers else None

    def inherited_key(self, key: str) -> str:
        """The front is a copy of the published backbone's first layers."""
        front, _, rest = key.partition(".")
        return f"backbone.features.{rest}" if front == "template_front" else key

    def head(self, xfeat: torch.Tensor, zf: torch.Tensor) -> dict[str, torch.Tensor]:
        cls, loc = self.ban_head(zf, xfeat)
        return {"cls": cls, "loc": loc}

    def channel_groups(self) -> dict[str, tuple[str | None, ...]]:
        groups = {}
        for prefix, module in self.named_modules():
            if not hasattr(module, "width_groups"):
                continue
            # the template front keeps the published widths whatever the student's are
            out, inp = (None, None) if prefix.startswith("template_front.") else module.width_groups
            tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            for name, tensor in tensors:
                if tensor.dim() == 0:
                    dims = ()
                elif tensor.dim() == 1:
                    dims = (out,)
                else:
                    dims = (out, inp) + (None,) * (tensor.dim() - 2)
                groups[f"{prefix}.{name}"] = dims
        return groups


# ------------------------------------------------------------------------------------------------- presets


def _backbone_widths(blocks) -> dict[str, int]:
    widths = {"stem": 16, "block1.se": 8, "stage1": 16}
    expand = {2: 72, 3: 88, 4: 96, 5: 240, 6: 240, 7: 120, 8: 144, 9: 288}
    se = {4: 24, 5: 64, 6: 64, 7: 32, 8: 40, 9: 72}
    stages = {"stage2": 24, "stage3": 40, "stage4": 48, "stage5": 96}
    for index, spec in enumerate(blocks[1:], start=2):
        widths[f"block{index}.expand"] = expand[index]
        if spec["se"]:
            widths[f"block{index}.se"] = se[index]
        widths[spec["out"]] = stages[spec["out"]]
    return widths


def _published(version: str) -> ModelConfig:
    blocks = _BLOCKS + ((_BLOCK_V3,) if version == "v3" else ())
    widths = _backbone_widths(blocks)
    if version == "v1":
        cls_k, bbox_k = (5, 5, 3), (3, 3, 5, 5)
        widths |= {"neck": 64}
        widths |= {f"cls_tower.{i}": 128 for i in range(1, 4)} | {f"bbox_tower.{i}": 96 for i in range(1, 5)}
    elif version == "v2":
        cls_k = bbox_k = (3,) * 6
        widths |= {"neck": 64, "corr_pw_reg": 48, "corr_pw_cls": 48}
        widths |= {f"cls_tower.{i}": 96 for i in range(1, 7)} | {f"bbox_tower.{i}": 96 for i in range(1, 7)}
    else:
        cls_k = bbox_k = (3,) * 6
        widths |= {"neck": 96, "corr_pw_reg": 96, "corr_pw_cls": 96}
        widths |= {f"cls_tower.{i}": 96 for i in range(7)} | {f"bbox_tower.{i}": 96 for i in range(7)}
    options = {"version": version, "blocks": blocks, "cls_kernels": cls_k, "bbox_kernels": bbox_k}
    if version == "v3":
        options["dw_channels"] = 96
    return ModelConfig(
        name=f"nanotrack-{version}",
        family="nanotrack",
        widths=widths,
        geometry=Geometry(
            exemplar_size=127, instance_size=255, stride=16, score_size=15 if version == "v3" else 16, context_amount=0.5
        ),
        hyper=NANOTRACK_HYPER[version],
        # Trained on BGR crops of raw 0-255 pixels, as pysot reads them with cv2.
        input=InputLayout(color="BGR", scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        correlation="depthwise" if version == "v3" else "pixelwise",
        options=options,
    )


def _half(teacher: ModelConfig) -> ModelConfig:
    widths = {g: scaled_width(c, 0.5) for g, c in teacher.widths.items()}
    # The neck is never applied; students keep one channel of it only so their keys stay the teacher's.
    widths["neck"] = 1
    return dataclasses.replace(teacher.with_widths(widths, name=f"{teacher.name}-s50"), teacher=teacher.name)


_TEACHERS = [_published(v) for v in VERSIONS]
# v3's students keep its depth-wise branches: their channels share the reducing conv's input axis with the
# pixel-wise ones, so a student without them could not inherit the teacher's weights (nor its down_* layers).
PRESETS: dict[str, ModelConfig] = {c.name: c for teacher in _TEACHERS for c in (teacher, _half(teacher))}
