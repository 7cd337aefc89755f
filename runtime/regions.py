"""VOT regions and their overlap, computed the way vot-toolkit 0.9.0 does (``vot/region/raster.py``).

A region is a 1-D array: 4 values are a rectangle ``x,y,w,h``; 6 or more (an even count) are a polygon
``x1,y1,x2,y2,...``; ``None`` is no region (a frame without ground truth, or the trajectory's initialisation,
failure and skipped frames). vot-toolkit does not intersect shapes exactly: it stores coordinates as float32,
rounds them to whole pixels (half to even), rasterises both regions to pixel masks over their joint bounding box
clipped to the image, and counts pixels. This module restates that rasteriser, quirks included, so that
overlaps, and every VOT figure built on them, equal the toolkit's.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import SourceError

#: A rectangle ``x,y,w,h`` (4 values), a polygon ``x1,y1,...`` (6 or more), or None for no region.
Region = np.ndarray | None
#: Pixel bounds ``(left, top, right, bottom)``, all inclusive.
_Bounds = tuple[int, int, int, int]
_SEPARATORS = re.compile(r"[,\s]+")


def read_regions(path: Path) -> list[Region]:
    """Read a VOT ground-truth file as it is, one region per row: 4 values (a rectangle) or an even count of 6 or
    more (a polygon), separated by commas, tabs or spaces; a row holding NaN is None (no ground truth), as
    vot-toolkit reads it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig", errors="replace").rstrip().splitlines()
    except OSError as exc:
        raise SourceError(f"cannot read ground truth {path}: {exc.strerror or exc}") from None
    regions: list[Region] = []
    for row, line in enumerate(lines):
        try:
            values = np.array([float(v) for v in _SEPARATORS.split(line.strip())])
        except ValueError:
            values = np.empty(0)
        if len(values) != 4 and (len(values) < 6 or len(values) % 2):
            raise SourceError(
                f"{path} line {row + 1}: expected 4 numbers (x,y,w,h) or an even count of 6 or more (polygon), "
                f"got {line.strip()[:60]!r}"
            )
        regions.append(None if np.isnan(values).any() else values)
    if not regions:
        raise SourceError(f"ground truth {path} is empty")
    return regions


def region_box(region: np.ndarray) -> np.ndarray:
    """The x,y,w,h box a rectangle-only tracker is given for a region: a rectangle as it is, a polygon's min/max
    corners (TraX's polygon-to-rectangle conversion)."""
    if len(region) == 4:
        return np.asarray(region, dtype=np.float64)
    xs, ys = region[0::2], region[1::2]
    return np.array([xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()], dtype=np.float64)


def region_overlap(first: Region, second: Region, bounds: tuple[int, int] | None = None) -> float:
    """vot-toolkit's ``calculate_overlap``: the pixel intersection over union of two regions rasterised inside the
    image of size ``bounds = (width, height)`` (None: not clipped). Two regions whose joint bounding box is thinner
    than two pixels overlap by 1 (vot-toolkit takes them as both empty); a joint box that the image clips to under
    two pixels overlaps by 0. A region holding NaN or infinity counts as no region."""
    first, second = _pixel_region(first), _pixel_region(second)
    box1, box2 = _region_bounds(first), _region_bounds(second)
    union = (min(box1[0], box2[0]), min(box1[1], box2[1]), max(box1[2], box2[2]), max(box1[3], box2[3]))
    if union[0] >= union[2] or union[1] >= union[3]:
        return 1.0
    if bounds is not None:
        union = (max(0, union[0]), max(0, union[1]), min(bounds[0] - 1, union[2]), min(bounds[1] - 1, union[3]))
        if union[0] >= union[2] or union[1] >= union[3]:
            return 0.0
    mask1, mask2 = _rasterise(first, union), _rasterise(second, union)
    joint = np.count_nonzero(mask1 | mask2)
    return float(np.count_nonzero(mask1 & mask2)) / float(joint) if joint else 0.0


def _pixel_region(region: Region) -> Region:
    """The region as vot-toolkit rasterises it: float32, rounded half to even to whole pixels."""
    if region is None:
        return None
    values = np.asarray(region, dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    return np.round(values.astype(np.float32))


def _region_bounds(region: Region) -> _Bounds:
    if region is None:
        return 0, 0, 0, 0
    if len(region) == 4:
        x, y, w, h = (int(v) for v in region)
        return x, y, x + w - 1, y + h - 1
    xs, ys = region[0::2], region[1::2]
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _rasterise(region: Region, bounds: _Bounds) -> np.ndarray:
    mask = np.zeros((bounds[3] - bounds[1] + 1, bounds[2] - bounds[0] + 1), dtype=bool)
    if region is None:
        return mask
    if len(region) == 4:
        _fill_rectangle(mask, region, bounds)
    else:
        _fill_polygon(mask, region, bounds)
    return mask


def _fill_rectangle(mask: np.ndarray, rectangle: np.ndarray, bounds: _Bounds) -> None:
    x, y, w, h = (int(v) for v in rectangle)
    if x > bounds[2] or x + w - 1 < bounds[0] or y > bounds[3] or y + h - 1 < bounds[1]:
        return
    left, top = max(0, x - bounds[0]), max(0, y - bounds[1])
    # vot-toolkit clips the far edges against the absolute right/bottom bounds, not the mask's size; the slice
    # clips them to the mask anyway
    right, bottom = min(bounds[2], x + w - 1 - bounds[0]), min(bounds[3], y + h - 1 - bounds[1])
    mask[top : bottom + 1, left : right + 1] = True


def _fill_polygon(mask: np.ndarray, polygon: np.ndarray, bounds: _Bounds) -> None:
    """vot-toolkit's scan-line fill: on each pixel row, every edge whose end rows span the row (ends included,
    so a vertex on the row gives a node from each of its two edges) gives a node at the column it crosses the
    row, truncated toward zero; sorted nodes are paired left to right into filled spans."""
    height, width = mask.shape
    xs = polygon[0::2].astype(np.float64) - bounds[0]
    ys = polygon[1::2].astype(np.float64) - bounds[1]
    prev_xs, prev_ys = np.roll(xs, 1), np.roll(ys, 1)
    rows = np.arange(height, dtype=np.float64)[:, None]
    crossing = (np.minimum(ys, prev_ys) <= rows) & (rows <= np.maximum(ys, prev_ys))
    rise, run = prev_ys - ys, prev_xs - xs
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_x = np.where(rise != 0, xs + (rows - ys) / rise * run, xs)
    nodes = np.where(crossing, np.trunc(cross_x), np.inf)
    nodes.sort(axis=1)
    counts = crossing.sum(axis=1)
    pairs = np.flatnonzero(counts == 2)
    starts, ends = nodes[pairs, 0], nodes[pairs, 1]
    fill = (starts < width) & (ends >= 0)
    columns = np.arange(width)
    first, last = np.maximum(starts[fill], 0)[:, None], np.minimum(ends[fill], width - 1)[:, None]
    mask[pairs[fill]] = (columns >= first) & (columns <= last)
    for row in np.flatnonzero(counts > 2):
        _fill_row(mask[row], [int(n) for n in nodes[row, : counts[row]]])


def _fill_row(row: np.ndarray, nodes: list[int]) -> None:
    """One row of vot-toolkit's fill: a pair of equal nodes (a vertex touching the row) is skipped one node at a
    time unless it is the last pair."""
    width = len(row)
    i = 0
    while i < len(nodes) - 1:
        if nodes[i] >= width:
            break
        if nodes[i] == nodes[i + 1] and i < len(nodes) - 2:
            i += 1
            continue
        if nodes[i + 1] >= 0:
            row[max(nodes[i], 0) : min(nodes[i + 1], width - 1) + 1] = True
        i += 2
