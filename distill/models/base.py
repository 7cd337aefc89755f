"""What every Siamese model in the zoo is: a typed config, the pysot split, and its width groups.

A model is defined by its ``ModelConfig``; teachers and students of a family are the same class at different
widths. ``template(z)`` runs once per target and ``track(x, zf)`` once per frame, which is also the export split
(template.onnx / search.onnx). The bundle metadata comes from the config (``bundle_geometry`` etc.), never from a
second copy of the numbers.

Shrinking needs to know, for every tensor of the state_dict, which width group each of its dimensions belongs to
(``channel_groups``); the shrink code in ``edgetrack.distill.shrink`` is generic over that description.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from edgetrack.runtime.bundle import BundleMeta, Geometry, Hyper, InputLayout, ModelIO
from edgetrack.runtime.families import family
from edgetrack.runtime.families.base import FamilySpec

CORRELATIONS = ("pixelwise", "depthwise", "upchannel")


#: Scaled channel counts stay multiples of this when the teacher's are. ONNX Runtime's x86 kernels (the NCHWc
#: layout) and TensorRT's tensor cores need it: the first shipped nano-m, at half NanoTrack v2's GFLOPs but with
#: counts such as 18, 54 and 66, ran its search model slower than v2; aligned, it takes two thirds of v2's time.
CHANNEL_MULTIPLE = 8


def scaled_width(width: int, factor: float, multiple: int = CHANNEL_MULTIPLE) -> int:
    """``width * factor`` rounded to a multiple of ``multiple`` (at least one) when ``width`` is one, else to >= 1."""
    if width % multiple:
        return max(1, round(width * factor))
    return multiple * max(1, round(width * factor / multiple))


@dataclass(frozen=True)
class ModelConfig:
    """The one typed place that describes a model: architecture widths, geometry and tracking defaults."""

    name: str
    family: str
    #: width group name -> number of channels; the order is the family's layer order (the DRL search reads it).
    widths: dict[str, int]
    geometry: Geometry
    hyper: Hyper
    input: InputLayout = field(default_factory=InputLayout)
    #: how template and search features meet; students default to the export-friendly pixel-wise form.
    correlation: str = "pixelwise"
    #: the preset a student is shrunk from, when it is one.
    teacher: str | None = None
    #: family-specific switches that are not widths (e.g. the NanoTrack version), as name -> value.
    options: dict[str, object] = field(default_factory=dict)
    #: names of the template outputs, in the order ``template`` returns them; each is a search-model input.
    template_outputs: tuple[str, ...] = ("zf",)

    def with_widths(self, widths: dict[str, int], name: str | None = None) -> ModelConfig:
        """The same model at other widths: unknown group names are an error, missing ones keep their width."""
        unknown = set(widths) - set(self.widths)
        if unknown:
            raise ValueError(f"{self.name} has no width groups {sorted(unknown)} (it has {list(self.widths)})")
        bad = {k: v for k, v in widths.items() if int(v) < 1}
        if bad:
            raise ValueError(f"widths must be at least 1, got {bad}")
        merged = {k: int(widths.get(k, v)) for k, v in self.widths.items()}
        return ModelConfig(
            name=name or self.name,
            family=self.family,
            widths=merged,
            geometry=self.geometry,
            hyper=self.hyper,
            input=self.input,
            correlation=self.correlation,
            teacher=self.teacher,
            options=dict(self.options),
            template_outputs=self.template_outputs,
        )

    @property
    def spec(self) -> FamilySpec:
        """The family's spec (``edgetrack.runtime.families``)."""
        return family(self.family)

    def bundle_meta(self, **fields) -> BundleMeta:
        """The bundle metadata this config defines; ``fields`` fill in what only an export knows (files, shapes)."""
        empty = {"template_io": ModelIO({}, {}), "search_io": ModelIO({}, {}), "models": {}, "files": {}}
        return BundleMeta(
            name=self.name, family=self.family, geometry=self.geometry, input=self.input, hyper=self.hyper, **(empty | fields)
        )


class SiameseModel(nn.Module, abc.ABC):
    """Base of every zoo model. Subclasses build their layers from ``config.widths`` in ``__init__``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.correlation not in CORRELATIONS:
            raise ValueError(f"unknown correlation {config.correlation!r} (choose from {', '.join(CORRELATIONS)})")
        self.config = config

    @abc.abstractmethod
    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """The backbone: a crop ``(B, 3, size, size)`` -> its feature map. Template and search share it, and the
        Siamese target response loss compares teacher and student on exactly these maps."""

    def template_head(self, zfeat: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Template features from the embedded exemplar; most families use the embedding as it is."""
        return zfeat

    @abc.abstractmethod
    def head(self, xfeat: torch.Tensor, *zf: torch.Tensor) -> dict[str, torch.Tensor]:
        """The embedded search crop and the template features -> outputs by name.

        The names and layouts are the family's (``config.spec.outputs``): nanotrack ``cls (B, 2, S, S)`` and
        ``loc (B, 4, S, S)`` ltrb distances in search-crop pixels; siamrpn ``cls (B, 2K, S, S)`` and
        ``loc (B, 4K, S, S)`` anchor deltas; siamfc ``score (B, 1, S, S)``. They decode with the runtime geometry.
        """

    def template(self, z: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Exemplar crop ``(B, 3, exemplar, exemplar)`` -> template features (one tensor per template output)."""
        return self.template_head(self.embed(z))

    def track(self, x: torch.Tensor, *zf: torch.Tensor) -> dict[str, torch.Tensor]:
        """Search crop ``(B, 3, instance, instance)`` and template features -> outputs by name (see ``head``)."""
        return self.head(self.embed(x), *zf)

    @abc.abstractmethod
    def channel_groups(self) -> dict[str, tuple[str | None, ...]]:
        """For every state_dict entry, the width group of each dimension (None: not a width).

        Example: a conv ``weight (out, in, k, k)`` between groups ``a`` and ``b`` is ``("b", "a", None, None)``;
        its BatchNorm's ``weight``, ``bias``, ``running_mean`` and ``running_var`` are ``("b",)`` and
        ``num_batches_tracked`` is ``()``. A depth-wise conv ``(c, 1, k, k)`` is ``("c", None, None, None)``.
        Every state_dict key must be present.
        """

    def template_features(self, z: torch.Tensor, zfeat: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``template(z)`` as a tuple, whatever the family returns, in ``config.template_outputs`` order; from the
        embedded exemplar ``zfeat`` when the caller already has it."""
        zf = self.template_head(self.embed(z) if zfeat is None else zfeat)
        return zf if isinstance(zf, tuple) else (zf,)

    def shared_template_features(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The template through ``embed``, the backbone that template and search share, even in a model whose
        template has its own front: what ``shrink.refit`` pairs with the model a student was shrunk from."""
        return SiameseModel.template_features(self, z)

    @property
    def copied_from_source(self) -> str | None:
        """The part of this model that is a frozen copy of the model it is shrunk from, named for an error message
        (such a model cannot start from random weights); None when there is none."""
        return None

    def inherited_key(self, key: str) -> str:
        """The state_dict key that a layer of this model copies when the model it is shrunk from lacks ``key``."""
        return key

    def example_crops(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero crops of the shapes the model runs on: ``z (1, 3, e, e)`` and ``x (num_scales, 3, i, i)``."""
        g = self.config.geometry
        return torch.zeros(1, 3, g.exemplar_size, g.exemplar_size), torch.zeros(g.num_scales, 3, g.instance_size, g.instance_size)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.track(x, *self.template_features(z))


def check_outputs(model: SiameseModel, outputs: dict[str, torch.Tensor]) -> None:
    """A model's ``track`` must give exactly its family's outputs."""
    want = set(model.config.spec.outputs)
    if set(outputs) != want:
        raise ValueError(f"{model.config.name} track() gave {sorted(outputs)}, a {model.config.family} gives {sorted(want)}")
