"""siamrpn: anchors, a background/foreground pair and four box deltas for each of ``K`` anchors per score-map
cell (SiamRPN, DaSiamRPN); the anchor shapes are the family's geometry extension."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import geometry as geo
from ..bundle import Geometry, GeometryExtension, _floats
from ..errors import BundleError
from . import register
from .base import ProposalFamily


@dataclass(frozen=True)
class AnchorLayout(GeometryExtension):
    """The anchor shapes of every cell: ``len(ratios) * len(scales)`` anchors, ratio-major (``geometry.anchor_shapes``).
    Stored as ``anchor_ratios`` and ``anchor_scales`` in the bundle's ``geometry``."""

    ratios: tuple[float, ...]
    scales: tuple[float, ...]

    @property
    def num_anchors(self) -> int:
        return len(self.ratios) * len(self.scales)

    @classmethod
    def read(cls, geometry: Mapping[str, Any], hyper: Mapping[str, Any]) -> AnchorLayout:
        layout = cls(
            ratios=_floats(geometry.get("anchor_ratios", []), "geometry.anchor_ratios", low=0.0, high=100.0, above=True),
            scales=_floats(geometry.get("anchor_scales", []), "geometry.anchor_scales", low=0.0, high=1000.0, above=True),
        )
        if layout.num_anchors == 0:
            raise BundleError("a siamrpn bundle needs anchor_ratios and anchor_scales in its geometry")
        return layout

    def geometry_json(self) -> dict[str, Any]:
        return {"anchor_ratios": self.ratios, "anchor_scales": self.scales}


@dataclass(frozen=True, kw_only=True)
class AnchorBased(ProposalFamily):
    """``K`` anchors per score-map cell, each regressing SiamRPN's deltas on its centre and size."""

    extension: type[GeometryExtension] = AnchorLayout

    def grid(self, g: Geometry) -> np.ndarray:
        return geo.anchor_grid(g.score_size, g.stride, g.extension.ratios, g.extension.scales)

    def window(self, g: Geometry) -> np.ndarray:
        return np.tile(geo.cosine_window(g.score_size), g.extension.num_anchors)

    def decode(self, loc: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return geo.decode_anchor_deltas(loc, grid)


SIAMRPN = register(AnchorBased(name="siamrpn", targets="anchor-deltas", box_loss="smooth-l1"))
