"""nanotrack: anchor-free points, a background/foreground pair and a left/top/right/bottom box at each point
(NanoTrack v1/v2/v3, SiamBAN's head)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import geometry as geo
from ..bundle import Geometry
from . import register
from .base import ProposalFamily


@dataclass(frozen=True, kw_only=True)
class AnchorFree(ProposalFamily):
    """One point per score-map cell, regressing its distances to the box's four sides."""

    def grid(self, g: Geometry) -> np.ndarray:
        return geo.point_grid(g.score_size, g.stride)

    def window(self, g: Geometry) -> np.ndarray:
        return geo.cosine_window(g.score_size)

    def decode(self, loc: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return geo.decode_ltrb(loc, grid)


NANOTRACK = register(AnchorFree(name="nanotrack", targets="points-ltrb", box_loss="iou"))
