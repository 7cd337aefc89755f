"""Training targets describe exactly what the tracker decodes: labels on the runtime's own grids, and regression
targets that the runtime's decoders turn back into the box."""

from __future__ import annotations

import numpy as np
import pytest

from edgetrack.distill import targets as tg
from edgetrack.distill.targets import build_targets
from edgetrack.runtime import geometry as geo
from edgetrack.runtime.bundle import Geometry
from edgetrack.runtime.families.nanotrack import NANOTRACK
from edgetrack.runtime.families.siamfc import SIAMFC as SIAMFC_FAMILY
from edgetrack.runtime.families.siamfc import ScalePyramid
from edgetrack.runtime.families.siamrpn import SIAMRPN as SIAMRPN_FAMILY
from edgetrack.runtime.families.siamrpn import AnchorLayout

# The zoo's geometries, written out so that this file runs without torch (``edgetrack.distill.models`` needs it);
# test_geometries_are_the_zoo_presets checks them against the presets where torch is installed.
NANOTRACK_V3 = Geometry(exemplar_size=127, instance_size=255, stride=16, score_size=15)
NANOTRACK_V2 = Geometry(exemplar_size=127, instance_size=255, stride=16, score_size=16)
SIAMRPN = Geometry(
    exemplar_size=127, instance_size=271, stride=8, score_size=19, extension=AnchorLayout(ratios=(0.33, 0.5, 1.0, 2.0, 3.0), scales=(8.0,))
)
SIAMFC = Geometry(
    exemplar_size=127, instance_size=255, stride=8, score_size=17,
    extension=ScalePyramid(num_scales=3, scale_step=1.0375, upsample=16, scale_penalty=0.9745),
)
FAMILIES = [(NANOTRACK, NANOTRACK_V3), (NANOTRACK, NANOTRACK_V2), (SIAMRPN_FAMILY, SIAMRPN), (SIAMFC_FAMILY, SIAMFC)]


def test_geometries_are_the_zoo_presets():
    pytest.importorskip("torch", reason="the model zoo needs torch")
    from edgetrack.distill.models import preset

    assert preset("nanotrack-v3").geometry == NANOTRACK_V3
    assert preset("nanotrack-v2").geometry == NANOTRACK_V2
    assert preset("siamrpn-alexnet").geometry == SIAMRPN
    assert preset("siamfc-alexnet").geometry == SIAMFC


def labels_at(points: np.ndarray, label: np.ndarray) -> dict[int, set[tuple[int, int]]]:
    """The grid points of each label value, as integer (x, y) offsets."""
    return {v: {(int(x), int(y)) for x, y in points[label == v]} for v in (-1, 0, 1)}


def box_iou(a, b) -> float:
    """IoU of two centre boxes (cx, cy, w, h), written out independently of the code under test."""
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


# ----------------------------------------------------------------------------------------------- nanotrack


@pytest.mark.parametrize("g", [NANOTRACK_V3, NANOTRACK_V2], ids=["v3", "v2"])
def test_nanotrack_labels_of_a_centred_box_by_hand(g):
    # 64 x 48 at the centre: semi-axes 32 and 24. Positive: ((x/32)^2 + (y/24)^2 < 0.25), background: > 1.
    t = build_targets(NANOTRACK, g, (0, 0, 64, 48))
    points = NANOTRACK.grid(g)
    got = labels_at(points, t.label)
    # (16, 0) gives exactly 0.25 and (0, 16) 0.44: only the centre is inside the quarter ellipse.
    assert got[1] == {(0, 0)}
    # The ring between: (16,0) 0.25, (32,0) 1.0 (not > 1), (0,16) 0.44, (16,16) 0.69; (48,0) 2.25 and (0,32) 1.78 are out.
    assert got[-1] == {(16, 0), (-16, 0), (32, 0), (-32, 0), (0, 16), (0, -16), (16, 16), (16, -16), (-16, 16), (-16, -16)}
    assert len(got[0]) == g.score_size**2 - 11
    centre = int(np.flatnonzero((points == 0).all(axis=1))[0])
    np.testing.assert_array_equal(t.loc[:, centre], [32, 24, 32, 24])
    np.testing.assert_array_equal(np.flatnonzero(t.loc_weight), [centre])
    assert t.label.dtype == np.int8 and t.loc.shape == (4, g.score_size**2) and t.loc.dtype == np.float32


@pytest.mark.parametrize("g", [NANOTRACK_V3, NANOTRACK_V2], ids=["v3", "v2"])
def test_nanotrack_off_centre_box_positives_by_hand_and_round_trip(g):
    box = (5.0, -3.0, 100.0, 70.0)  # semi-axes 50 and 35
    t = build_targets(NANOTRACK, g, box)
    points = NANOTRACK.grid(g)
    # ((x-5)/50)^2 + ((y+3)/35)^2: (0,0) .017, (16,0) .056, (-16,0) .184, (0,-16) .148, (16,-16) .186 are < 0.25;
    # (32,0) .299, (0,16) .305, (-16,-16) .314, (16,16) .343 and (0,-32) .696 are not.
    assert labels_at(points, t.label)[1] == {(0, 0), (16, 0), (-16, 0), (0, -16), (16, -16)}
    ellipse = ((points[:, 0] - 5) / 50) ** 2 + ((points[:, 1] + 3) / 35) ** 2
    np.testing.assert_array_equal(t.label == 0, ellipse > 1)
    positive = t.label == 1
    np.testing.assert_array_equal(t.loc_weight, positive.astype(np.float32))
    # The runtime's own decoder gives the box back at every positive point.
    cx, cy, w, h = geo.decode_ltrb(t.loc[:, positive], points[positive])
    for got, expected in zip((cx, cy, w, h), box):
        np.testing.assert_allclose(got, expected, atol=1e-4)
    # (16, -16): left = 16 - (5 - 50) = 61, top = -16 - (-3 - 35) = 22, right = 55 - 16 = 39, bottom = 32 + 16 = 48
    index = int(np.flatnonzero((points == (16, -16)).all(axis=1))[0])
    np.testing.assert_array_equal(t.loc[:, index], [61, 22, 39, 48])


def test_nanotrack_box_smaller_than_the_stride_has_one_positive_at_its_nearest_point():
    points = NANOTRACK.grid(NANOTRACK_V3)
    # Centre (2, 1), 6 x 4: inside the box is only the point (0, 0), at ellipse value 0.69, not < 0.25.
    t = build_targets(NANOTRACK, NANOTRACK_V3, (2, 1, 6, 4))
    assert labels_at(points, t.label)[1] == {(0, 0)}
    index = int(np.flatnonzero(t.label == 1)[0])
    assert t.loc_weight.sum() == 1 and t.loc_weight[index] == 1
    cx, cy, w, h = geo.decode_ltrb(t.loc[:, [index]], points[[index]])
    np.testing.assert_allclose([cx[0], cy[0], w[0], h[0]], [2, 1, 6, 4], atol=1e-5)
    # Centre (9, 0): (16, 0) is 7 px away, (0, 0) 9 px; the box [6, 12] x [-2, 2] holds no point, so the
    # positive point is labelled but not regressed (its distances to the sides would not all be positive).
    t = build_targets(NANOTRACK, NANOTRACK_V3, (9, 0, 6, 4))
    assert labels_at(points, t.label)[1] == {(16, 0)}
    assert t.loc_weight.sum() == 0


# ------------------------------------------------------------------------------------------------- siamrpn


def test_siamrpn_anchor_shapes_by_hand():
    # pysot: area 64; ratio 0.33 -> w int(sqrt(64/0.33)) = 13, h int(13*0.33) = 4; 0.5 -> 11, 5; 1 -> 8, 8;
    # 2 -> 5, 10; 3 -> 4, 12; all times scale 8. Anchor-major: anchor k covers locations k*361 .. k*361+360.
    anchors = SIAMRPN_FAMILY.grid(SIAMRPN)
    assert anchors.shape == (5 * 19 * 19, 4)
    expected = [(104, 32), (88, 40), (64, 64), (40, 80), (32, 96)]
    for k, shape in enumerate(expected):
        np.testing.assert_array_equal(anchors[k * 361 : (k + 1) * 361, 2:], np.tile(shape, (361, 1)))
    np.testing.assert_array_equal(anchors[:361, :2], geo.point_grid(19, 8))


def test_siamrpn_positives_of_a_square_box_by_hand_and_round_trip():
    box = (0.0, 0.0, 64.0, 64.0)
    anchors = SIAMRPN_FAMILY.grid(SIAMRPN)
    t = build_targets(SIAMRPN_FAMILY, SIAMRPN, box, np.random.default_rng(3))
    positive = np.flatnonzero(t.label == 1)
    # Only the 64 x 64 anchors (k = 2) qualify: shifted by (8, 0) IoU 56*64/(8192-3584) = 0.78, by (8, 8)
    # 3136/5056 = 0.62, by (16, 0) 3072/5120 = 0.6 (not > 0.6). 88 x 40 at the centre: 2560/5056 = 0.51.
    got = {(int(a[0]), int(a[1]), int(a[2]), int(a[3])) for a in anchors[positive]}
    assert got == {(x, y, 64, 64) for x in (-8, 0, 8) for y in (-8, 0, 8)}
    np.testing.assert_array_equal(np.flatnonzero(t.loc_weight), np.sort(positive))
    cx, cy, w, h = geo.decode_anchor_deltas(t.loc[:, positive], anchors[positive])
    for got_v, expected in zip((cx, cy, w, h), box):
        np.testing.assert_allclose(got_v, expected, atol=1e-4)
    # At the (8, -8) anchor the deltas are (-8/64, 8/64, log 1, log 1).
    index = 2 * 361 + int(np.flatnonzero((geo.point_grid(19, 8) == (8, -8)).all(axis=1))[0])
    np.testing.assert_allclose(t.loc[:, index], [-0.125, 0.125, 0, 0], atol=1e-7)
    assert (t.label != -1).sum() == tg.MAX_ANCHORS  # 9 positives and 55 sampled negatives


@pytest.mark.parametrize("box", [(0.0, 0.0, 64.0, 64.0), (13.0, -7.0, 100.0, 36.0), (-21.0, 30.0, 36.0, 90.0)])
def test_siamrpn_labels_follow_iou_and_are_sampled(box):
    anchors = SIAMRPN_FAMILY.grid(SIAMRPN)
    t = build_targets(SIAMRPN_FAMILY, SIAMRPN, box, np.random.default_rng(11))
    iou = np.array([box_iou(a, box) for a in anchors])
    positive, negative = t.label == 1, t.label == 0
    assert positive.any()
    assert (iou[positive] > 0.6).all() and (iou[negative] < 0.3).all()
    # Fewer than MAX_POSITIVES qualify here, so all of them are positive.
    np.testing.assert_array_equal(positive, iou > 0.6)
    assert positive.sum() <= 16 and (t.label != -1).sum() <= 64
    cx, cy, w, h = geo.decode_anchor_deltas(t.loc[:, positive], anchors[positive])
    for got, expected in zip((cx, cy, w, h), box):
        np.testing.assert_allclose(got, expected, atol=1e-3)


def test_siamrpn_caps_positives_when_many_anchors_overlap():
    # 32 x 32 anchors every 2 px: (32-|dx|)(32-|dy|) > 768 holds for 37 shifts, more than MAX_POSITIVES.
    g = Geometry(exemplar_size=127, instance_size=255, stride=2, score_size=33, extension=AnchorLayout(ratios=(1.0,), scales=(16.0,)))
    box = (0.0, 0.0, 32.0, 32.0)
    anchors = SIAMRPN_FAMILY.grid(g)
    iou = np.array([box_iou(a, box) for a in anchors])
    assert (iou > 0.6).sum() == 37
    t = build_targets(SIAMRPN_FAMILY, g, box, np.random.default_rng(0))
    assert (t.label == 1).sum() == 16 and (t.label == 0).sum() == 48
    assert (iou[t.label == 1] > 0.6).all() and (iou[t.label == 0] < 0.3).all()
    np.testing.assert_array_equal(t.loc_weight, (t.label == 1).astype(np.float32))


def test_siamrpn_sampling_follows_the_rng():
    box = (13.0, -7.0, 100.0, 36.0)
    a = build_targets(SIAMRPN_FAMILY, SIAMRPN, box, np.random.default_rng(5))
    b = build_targets(SIAMRPN_FAMILY, SIAMRPN, box, np.random.default_rng(5))
    c = build_targets(SIAMRPN_FAMILY, SIAMRPN, box, np.random.default_rng(6))
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(a.label, c.label)
    # Without an rng the sampling is still reproducible.
    np.testing.assert_array_equal(build_targets(SIAMRPN_FAMILY, SIAMRPN, box).label, build_targets(SIAMRPN_FAMILY, SIAMRPN, box).label)


# -------------------------------------------------------------------------------------------------- siamfc


def test_siamfc_positives_by_hand():
    points = SIAMFC_FAMILY.grid(SIAMFC)
    t = build_targets(SIAMFC_FAMILY, SIAMFC, (8, 0, 40, 30))
    # Cells every 8 px within 16 px of (8, 0): dx = 0 -> |y| <= 16; dx = +-8 -> |y| <= 13.9; dx = +-16 -> y = 0.
    expected = {(8, y) for y in (-16, -8, 0, 8, 16)} | {(x, y) for x in (0, 16) for y in (-8, 0, 8)} | {(-8, 0), (24, 0)}
    got = labels_at(points, t.label)
    assert got[1] == expected
    assert got[-1] == set() and len(got[0]) == 17 * 17 - 13
    assert not t.loc_weight.any() and not t.loc.any()


# ---------------------------------------------------------------------------------------- every family


@pytest.mark.parametrize("family, g", FAMILIES, ids=["nanotrack-v3", "nanotrack-v2", "siamrpn", "siamfc"])
def test_a_negative_pair_is_all_background(family, g):
    t = build_targets(family, g, None)
    n = g.score_size**2 * getattr(g.extension, "num_anchors", 1)
    assert t.label.shape == (n,) and not t.label.any()
    assert t.loc.shape == (4, n) and not t.loc.any()
    assert t.loc_weight.shape == (n,) and not t.loc_weight.any()


def test_locations_are_in_the_trackers_flattening_order():
    points = NANOTRACK.grid(NANOTRACK_V3)
    np.testing.assert_array_equal(points, geo.point_grid(15, 16))
    # Row-major, as a (S, S) map flattened: index i*S + j is (x_j, y_i).
    np.testing.assert_array_equal(points[[0, 1, 15, 112, 224]], [(-112, -112), (-96, -112), (-112, -96), (0, 0), (112, 112)])
    np.testing.assert_array_equal(NANOTRACK.grid(NANOTRACK_V2)[[0, 136]], [(-128, -128), (0, 0)])
    np.testing.assert_array_equal(SIAMFC_FAMILY.grid(SIAMFC), geo.point_grid(17, 8))
    np.testing.assert_array_equal(SIAMRPN_FAMILY.grid(SIAMRPN), geo.anchor_grid(19, 8, (0.33, 0.5, 1.0, 2.0, 3.0), (8.0,)))
    # A grid passed in is used as is.
    grid = NANOTRACK.grid(NANOTRACK_V3)
    a, b = build_targets(NANOTRACK, NANOTRACK_V3, (5, -3, 100, 70), grid=grid), build_targets(NANOTRACK, NANOTRACK_V3, (5, -3, 100, 70))
    np.testing.assert_array_equal(a.loc, b.loc)
