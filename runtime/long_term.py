"""Long-term mode's re-detection (SiamRPN-LT style): while the target is lost, the search model is also run
over the whole frame in tiles, until a candidate is confident enough to re-acquire it (``SiameseTracker``).

A tile is an ordinary search crop (``crops.search_crop``: same model input, same side as the normal search region
at the target's size when it was lost) centred on one point of a grid over the frame. A tile finds a target whose
centre lies within its score map's *reach* of its centre (``score_size // 2`` cells of ``stride`` crop pixels);
neighbouring tiles' reaches overlap by ``1 - TILE_STEP``, so every point of the frame is within one tile's reach.
The tiles nearest the place the target was lost come first; a frame scans at most ``TILES_PER_FRAME`` of them,
round-robin, so the cost of a lost frame is bounded whatever the frame's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .bundle import Geometry
from .crops import TargetState, search_side
from .families.base import Candidate

#: The distance between neighbouring tile centres, at most, as a share of the width of a tile's reach.
TILE_STEP = 0.75
#: Tiles scanned per lost frame (search model runs), at most.
TILES_PER_FRAME = 4


def tile_centres(length: int, reach: float) -> list[float]:
    """Centres along one frame axis of ``length`` pixels of tiles that find a target up to ``reach`` pixels either
    side of their centre: the first and last ``reach`` from the frame's ends, evenly spaced at most
    ``TILE_STEP * 2 * reach`` apart (one central tile when the frame is no longer than ``2 * reach``)."""
    if length <= 2 * reach:
        return [length / 2]
    count = math.ceil((length - 2 * reach) / (TILE_STEP * 2 * reach)) + 1
    step = (length - 2 * reach) / (count - 1)
    return [reach + i * step for i in range(count)]


class TileScan:
    """The tiles of one lost spell, for a target of the size of ``last``, the state it was lost in."""

    def __init__(self, last: TargetState, frame_shape: tuple[int, int], geometry: Geometry):
        height, width = frame_shape
        reach = (geometry.score_size // 2) * geometry.stride * search_side(last.w, last.h, geometry) / geometry.instance_size
        grid = [TargetState(cx, cy, last.w, last.h) for cy in tile_centres(height, reach) for cx in tile_centres(width, reach)]
        #: nearest the target's last place first
        self.tiles = sorted(grid, key=lambda t: (t.cx - last.cx) ** 2 + (t.cy - last.cy) ** 2)
        self._next = 0

    def scan(self, search: Callable[[TargetState], Candidate], confidence: Callable[[float], float]) -> tuple[Candidate, float]:
        """Search the next ``TILES_PER_FRAME`` tiles of this frame; return the most confident candidate and its
        confidence. ``search`` runs the search model on the crop around a tile, ``confidence`` calibrates a contrast."""
        best: tuple[Candidate, float] | None = None
        for _ in range(min(TILES_PER_FRAME, len(self.tiles))):
            found = search(self.tiles[self._next])
            self._next = (self._next + 1) % len(self.tiles)
            scored = (found, confidence(found.contrast))
            if best is None or scored[1] > best[1]:
                best = scored
        return best
