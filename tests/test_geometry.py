"""The geometry against hand-computed values and against pysot's own crop algorithm."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edgetrack.runtime import geometry as geo


def test_box_centre_follows_pysot():
    # pysot: centre = x + (w - 1) / 2; reported corner = cx - w / 2
    assert geo.xywh_to_center((10, 20, 30, 40)) == (24.5, 39.5, 30.0, 40.0)
    assert geo.center_to_xywh(24.5, 39.5, 30, 40) == (9.5, 19.5, 30, 40)
    assert geo.corners_to_center(0, 10, 40, 70) == (20.0, 40.0, 40, 60)


def test_polygon_becomes_min_max_box():
    assert geo.polygon_to_xywh([10, 20, 50, 25, 45, 60, 5, 55]) == (5.0, 20.0, 45.0, 40.0)


def test_context_size():
    # p = 0.5 * (30 + 40) = 35 -> sqrt(65 * 75)
    assert geo.context_size(30, 40, 0.5) == pytest.approx(math.sqrt(65 * 75))


def pysot_subwindow(im, pos, model_sz, original_sz, avg_chans):
    """pysot's get_subwindow, transcribed: it pads the whole frame, which edgetrack must not do."""
    sz = original_sz
    c = (original_sz + 1) / 2
    xmin = np.floor(pos[0] - c + 0.5)
    xmax = xmin + sz - 1
    ymin = np.floor(pos[1] - c + 0.5)
    ymax = ymin + sz - 1
    left, top = int(max(0.0, -xmin)), int(max(0.0, -ymin))
    right, bottom = int(max(0.0, xmax - im.shape[1] + 1)), int(max(0.0, ymax - im.shape[0] + 1))
    xmin, xmax, ymin, ymax = xmin + left, xmax + left, ymin + top, ymax + top
    r, c_, k = im.shape
    if any([top, bottom, left, right]):
        te = np.zeros((r + top + bottom, c_ + left + right, k), np.uint8)
        te[top : top + r, left : left + c_] = im
        te[0:top, left : left + c_] = avg_chans
        te[r + top :, left : left + c_] = avg_chans
        te[:, 0:left] = avg_chans
        te[:, c_ + left :] = avg_chans
        patch = te[int(ymin) : int(ymax + 1), int(xmin) : int(xmax + 1)]
    else:
        patch = im[int(ymin) : int(ymax + 1), int(xmin) : int(xmax + 1)]
    if model_sz != original_sz:
        patch = cv2.resize(patch, (model_sz, model_sz))
    return patch


@pytest.mark.parametrize(
    "centre, size",
    [
        ((160.0, 120.0), 127),  # inside, no resize
        ((160.3, 119.6), 201),  # inside, downscale
        ((10.0, 15.0), 180),  # top-left padding
        ((315.5, 235.2), 90),  # bottom-right padding, upscale
        ((-100.0, 500.0), 150),  # entirely outside the frame
        ((160.0, 120.0), 700),  # larger than the frame on every side
    ],
)
def test_crop_equals_pysot(centre, size):
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    avg = frame.mean(axis=(0, 1))
    expected = pysot_subwindow(frame, centre, 127, size, avg)
    cropper = geo.Cropper(127)
    got = cropper.crop(frame, *centre, size, geo.mean_fill(frame))
    np.testing.assert_array_equal(got, expected)


def test_crop_reuses_its_buffers():
    frame = np.full((100, 100, 3), 50, np.uint8)
    cropper = geo.Cropper(64)
    first = cropper.crop(frame, 5, 5, 120, geo.mean_fill(frame))
    scratch = cropper._scratch
    second = cropper.crop(frame, 6, 6, 110, geo.mean_fill(frame))
    assert first is second  # the output buffer is the cropper's own
    assert cropper._scratch is scratch  # a smaller padded patch reuses the scratch buffer


def test_mean_fill_truncates_like_pysot_uint8_buffer():
    frame = np.zeros((2, 1, 3), np.uint8)
    frame[0] = (1, 2, 3)  # means 0.5, 1.0, 1.5
    np.testing.assert_array_equal(geo.mean_fill(frame), [0, 1, 1])


def test_point_grid_layout():
    points = geo.point_grid(16, 16)
    assert points.shape == (256, 2)
    np.testing.assert_array_equal(points[0], [-128, -128])
    np.testing.assert_array_equal(points[1], [-112, -128])  # row-major: x moves first
    np.testing.assert_array_equal(points[16], [-128, -112])
    np.testing.assert_array_equal(points[-1], [112, 112])
    odd = geo.point_grid(15, 16)
    np.testing.assert_array_equal(odd[0], [-112, -112])
    np.testing.assert_array_equal(odd[7 * 15 + 7], [0, 0])  # an odd map has its centre cell at 0


def test_anchor_shapes_are_siamrpns():
    # stride 8, ratios 0.33/0.5/1/2/3, scale 8: the classic SiamRPN anchors
    shapes = geo.anchor_shapes(8, [0.33, 0.5, 1, 2, 3], [8])
    np.testing.assert_array_equal(shapes, [[104, 32], [88, 40], [64, 64], [40, 80], [32, 96]])


def test_anchor_grid_is_anchor_major():
    anchors = geo.anchor_grid(17, 8, [0.5, 1], [8])
    assert anchors.shape == (2 * 289, 4)
    np.testing.assert_array_equal(anchors[0], [-64, -64, 88, 40])
    np.testing.assert_array_equal(anchors[289], [-64, -64, 64, 64])
    np.testing.assert_array_equal(anchors[289 + 8 * 17 + 8], [0, 0, 64, 64])


def test_decode_ltrb_by_hand():
    points = np.array([[0.0, 0.0], [16.0, -16.0]], np.float32)
    loc = np.array([[10, 1], [20, 2], [30, 3], [40, 4]], np.float32)
    cx, cy, w, h = geo.decode_ltrb(loc, points)
    # point (0,0): x1=-10 y1=-20 x2=30 y2=40; point (16,-16): x1=15 y1=-18 x2=19 y2=-12
    np.testing.assert_allclose(cx, [10, 17])
    np.testing.assert_allclose(cy, [10, -15])
    np.testing.assert_allclose(w, [40, 4])
    np.testing.assert_allclose(h, [60, 6])


def test_decode_anchor_deltas_by_hand():
    anchors = np.array([[0, 0, 64, 64], [8, -8, 32, 96]], np.float32)
    loc = np.array([[0.5, 0], [-0.25, 0], [math.log(2), 0], [0, math.log(0.5)]], np.float32)
    cx, cy, w, h = geo.decode_anchor_deltas(loc, anchors)
    np.testing.assert_allclose(cx, [32, 8])
    np.testing.assert_allclose(cy, [-16, -8])
    np.testing.assert_allclose(w, [128, 32], rtol=1e-6)
    np.testing.assert_allclose(h, [64, 48], rtol=1e-6)


def test_two_way_softmax():
    cls = np.array([[0.0, 2.0], [math.log(3), 2.0]])
    np.testing.assert_allclose(geo.two_way_softmax(cls), [0.75, 0.5])


def test_size_penalty_by_hand():
    # same size and ratio: no penalty
    assert geo.size_penalty(np.array([40.0]), np.array([20.0]), 40.0, 20.0, 0.15)[0] == pytest.approx(1.0)
    # doubling a 10x10 target: padded sizes 20 -> 40, s_c = 2, r_c = 1 -> exp(-k)
    assert geo.size_penalty(np.array([20.0]), np.array([20.0]), 10.0, 10.0, 0.15)[0] == pytest.approx(math.exp(-0.15))
    # 10x10 -> 20x5: ratio 1 -> 4 gives r_c = 4; padded sizes sqrt(20*20)=20 and sqrt(32.5*17.5): s_c = 20/23.85
    s = 20 / math.sqrt(32.5 * 17.5)
    expected = math.exp(-(4 * max(s, 1 / s) - 1) * 0.1)
    assert geo.size_penalty(np.array([20.0]), np.array([5.0]), 10.0, 10.0, 0.1)[0] == pytest.approx(expected)


def test_cosine_window_and_blend():
    np.testing.assert_allclose(geo.cosine_window(3), [0, 0, 0, 0, 1, 0, 0, 0, 0])
    window = geo.cosine_window(5)
    assert window.reshape(5, 5)[2, 2] == pytest.approx(1.0) and window.argmax() == 12
    np.testing.assert_allclose(geo.apply_window(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.25), [0.75, 0.25])


def test_smoothing_and_clip():
    assert geo.smooth(100.0, 200.0, 0.25) == 125.0
    assert geo.clip_box(-5, 500, 5, 1000, height=480, width=640) == (0.0, 480, 10.0, 480)
    assert geo.clip_box(700, -1, 900, 3, height=480, width=640) == (640, 0.0, 640, 10.0)


def test_siamfc_upsampling_and_displacement():
    response = np.zeros((17, 17), np.float32)
    response[8, 8] = 1
    up = geo.upsample_response(response, 16)
    assert up.shape == (272, 272)
    row, col = np.unravel_index(up.argmax(), up.shape)
    assert abs(row - 135.5) <= 8 and abs(col - 135.5) <= 8  # the peak stays at the centre cell
    # centre of a 272 map is 135.5; one upsampled cell = stride / factor = 0.5 crop pixels
    assert geo.response_displacement(150, 120, 272, 8, 16) == (-7.75, 7.25)
    np.testing.assert_allclose(geo.siamfc_scale_factors(3, 1.0375), [1 / 1.0375, 1, 1.0375])
