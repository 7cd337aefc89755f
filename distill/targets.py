"""Training targets for every family, built on the grid of the family's spec (``edgetrack.runtime.families``) so
that a model learns exactly the layout the tracker decodes.

A target box is given the way the tracker reads its outputs: ``cx, cy, w, h`` in search-crop pixels, with the
centre as an offset from the crop centre. ``None`` is a negative pair (no target in the search crop): every
location is background and nothing is regressed.

Labels are ``1`` (target), ``0`` (background) or ``-1`` (ignored); ``loc`` holds the regression target of every
location in the family's output layout flattened to ``(4, N)``, with ``loc_weight (N,)`` saying where it counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgetrack.runtime.bundle import Geometry
from edgetrack.runtime.families.base import FamilySpec
from edgetrack.runtime.metrics import rect_iou

#: siamrpn (pysot): anchors overlapping the target by more than this are positive, less than ``NEG_IOU`` negative.
POS_IOU, NEG_IOU = 0.6, 0.3
#: siamrpn (pysot): at most this many positive anchors, and this many anchors in all, count per pair.
MAX_POSITIVES, MAX_ANCHORS = 16, 64
#: siamfc: cells whose centre is within this many search-crop pixels of the target centre are positive.
SIAMFC_RADIUS = 16.0


@dataclass(frozen=True)
class Targets:
    """One pair's targets: ``label (N,)`` int8, ``loc (4, N)`` float32 and ``loc_weight (N,)`` float32."""

    label: np.ndarray
    loc: np.ndarray
    loc_weight: np.ndarray


def build_targets(spec: FamilySpec, g: Geometry, box, rng: np.random.Generator | None = None, grid: np.ndarray | None = None) -> Targets:
    """Targets of one search crop for ``box`` (``cx, cy, w, h``, see the module doc) or ``None`` (negative pair),
    assigned on the family's grid as its spec says (``spec.targets``).

    ``rng`` samples siamrpn's anchors; ``grid`` is ``spec.grid(g)``, passed in to build it once.
    """
    grid = spec.grid(g) if grid is None else grid
    n = len(grid)
    if box is None:
        return Targets(np.zeros(n, np.int8), np.zeros((4, n), np.float32), np.zeros(n, np.float32))
    return ASSIGNMENTS[spec.targets](grid, tuple(float(v) for v in box), rng)


def _points_ltrb(points: np.ndarray, box, rng) -> Targets:
    """Anchor-free (SiamBAN / NanoTrack): points inside a central ellipse of the box are positive, points outside
    the box's inscribed ellipse are background, the ring between is ignored; every point inside the box regresses
    its distances to the four sides."""
    cx, cy, w, h = box
    px, py = points[:, 0], points[:, 1]
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    ellipse = ((px - cx) / (w / 2)) ** 2 + ((py - cy) / (h / 2)) ** 2
    label = np.full(len(points), -1, np.int8)
    label[ellipse > 1.0] = 0
    # A quarter-size ellipse, as SiamBAN; a target smaller than the stride still gets its nearest point.
    label[ellipse < 0.25] = 1
    if not (label == 1).any():
        label[int(np.argmin(ellipse))] = 1
    loc = np.stack([px - x1, py - y1, x2 - px, y2 - py]).astype(np.float32)
    inside = (loc > 0).all(axis=0)
    return Targets(label, loc, ((label == 1) & inside).astype(np.float32))


def _anchor_deltas(anchors: np.ndarray, box, rng) -> Targets:
    """SiamRPN (pysot's AnchorTarget): IoU-labelled anchors, sub-sampled, regressing the inverse of the runtime's
    ``decode_anchor_deltas``."""
    rng = rng or np.random.default_rng(0)
    cx, cy, w, h = box
    corners = np.concatenate([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, 2:]], axis=1)
    iou = rect_iou(corners, np.tile([cx - w / 2, cy - h / 2, w, h], (len(anchors), 1)))
    label = np.full(len(anchors), -1, np.int8)
    positives = np.flatnonzero(iou > POS_IOU)
    negatives = np.flatnonzero(iou < NEG_IOU)
    if len(positives) > MAX_POSITIVES:
        positives = rng.choice(positives, MAX_POSITIVES, replace=False)
    if len(negatives) > MAX_ANCHORS - len(positives):
        negatives = rng.choice(negatives, MAX_ANCHORS - len(positives), replace=False)
    label[negatives] = 0
    label[positives] = 1
    acx, acy, aw, ah = anchors.T
    loc = np.stack([(cx - acx) / aw, (cy - acy) / ah, np.log(w / aw), np.log(h / ah)]).astype(np.float32)
    weight = np.zeros(len(anchors), np.float32)
    if len(positives):
        weight[positives] = 1.0
    return Targets(label, loc, weight)


def _score_map(points: np.ndarray, box, rng) -> Targets:
    """SiamFC: the logistic label map, positive within ``SIAMFC_RADIUS`` of the target centre; no regression."""
    cx, cy = box[0], box[1]
    distance = np.hypot(points[:, 0] - cx, points[:, 1] - cy)
    label = (distance <= SIAMFC_RADIUS).astype(np.int8)
    return Targets(label, np.zeros((4, len(points)), np.float32), np.zeros(len(points), np.float32))


#: How a family's grid is labelled for a target box, by the name its spec gives (``FamilySpec.targets``).
ASSIGNMENTS = {"points-ltrb": _points_ltrb, "anchor-deltas": _anchor_deltas, "score-map": _score_map}
