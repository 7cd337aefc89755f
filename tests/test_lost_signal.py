"""The lost-target signal (``runtime.lost_signal``) and long-term re-detection (``runtime.long_term``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import synthetic

from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.bundle import load_bundle
from edgetrack.runtime.crops import TargetState
from edgetrack.runtime.families.base import Candidate
from edgetrack.runtime.long_term import TILES_PER_FRAME, TileScan, tile_centres
from edgetrack.runtime.lost_signal import LostDetector, LostSignalSettings
from edgetrack.runtime.metrics import rect_iou
from edgetrack.runtime.open_tracker import open_tracker
from edgetrack.runtime.tracker import SiameseTracker

SETTINGS = LostSignalSettings(window=3, full_confidence=0.5)


def test_confidence_is_the_windowed_mean_of_contrast_over_the_first_frames():
    detector = LostDetector(0.8, SETTINGS)
    detector.start()
    # Reference 10, full confidence from 5: one-frame confidences 1, 1, 0.8, 0.4, 0.4, 1.
    confidences = [detector.update(c) for c in (10.0, 12.0, 4.0, 2.0, 2.0, 8.0)]
    assert confidences == pytest.approx([1.0, 1.0, 2.8 / 3, 2.2 / 3, 1.6 / 3, 1.8 / 3])
    assert [detector.is_lost(c) for c in confidences] == [False, False, False, True, True, True]


def test_start_forgets_the_reference_and_restart_forgets_the_lost_frames():
    detector = LostDetector(0.8, SETTINGS)
    detector.start()
    detector.update(10.0)
    assert detector.update(2.5) == pytest.approx(0.75)
    detector.restart(0.9)
    assert detector.update(5.0) == pytest.approx(0.95)
    detector.start()
    assert detector.frame_confidence(5.0) == 0.0  # no reference yet
    assert detector.update(1.0) == 1.0  # the new sequence's reference


def test_a_non_finite_or_negative_contrast_counts_as_none():
    detector = LostDetector(0.5, LostSignalSettings(window=1, full_confidence=1.0))
    detector.start()
    assert detector.update(float("nan")) == 0.0  # a reference can't be NaN: the smallest one is kept
    assert detector.update(-3.0) == 0.0
    detector.start()
    detector.update(4.0)
    assert detector.update(float("inf")) == 0.0 and detector.update(2.0) == 0.5


def test_settings_are_checked():
    with pytest.raises(ValueError, match="window"):
        LostDetector(0.5, LostSignalSettings(window=0))


def test_tile_centres_bring_every_point_within_a_tiles_reach():
    # 480 px, reach 64.5: centres 64.5 from either end, 351 px between them in 4 steps of 87.75 <= 0.75 * 129.
    assert tile_centres(480, 64.5) == pytest.approx([64.5, 152.25, 240.0, 327.75, 415.5])
    assert tile_centres(129, 64.5) == [64.5]
    assert tile_centres(100, 64.5) == [50.0]


def test_tile_scan_takes_the_nearest_tiles_first_then_round_robin(tmp_path):
    meta = synthetic.siamrpn_bundle(tmp_path / "b.etb").meta
    # A 64 px target: search side 128 * 255 / 127 px; the 17-cell map of stride 8 reaches 64 of 255 crop pixels,
    # 64.5 frame pixels; a 480 x 360 frame needs 5 x 4 tiles.
    scan = TileScan(TargetState(100.0, 100.0, 64.0, 64.0), (360, 480), meta.geometry)
    assert len(scan.tiles) == 20
    xs, ys = tile_centres(480, 64 * 128 / 127), tile_centres(360, 64 * 128 / 127)
    assert {(t.cx, t.cy) for t in scan.tiles} == {(x, y) for y in ys for x in xs}
    assert [(t.cx, t.cy) for t in scan.tiles[:4]] == [(xs[0], ys[0]), (xs[0], ys[1]), (xs[1], ys[0]), (xs[1], ys[1])]
    assert all((t.w, t.h) == (64.0, 64.0) for t in scan.tiles)
    seen = []

    def search(tile):
        seen.append(tile)
        return Candidate((tile.cx, tile.cy, tile.w, tile.h), 0.5, 1.0, contrast=tile.cx)

    found, confidence = scan.scan(search, lambda contrast: contrast / 1000)
    assert len(seen) == TILES_PER_FRAME and confidence == pytest.approx(xs[1] / 1000) and found.box[0] == xs[1]
    for _ in range(5):
        scan.scan(search, lambda contrast: contrast)
    assert seen == scan.tiles + scan.tiles[:TILES_PER_FRAME]


def test_proposal_contrast_is_the_peak_logit_minus_the_mean_logit(tmp_path):
    meta = synthetic.siamrpn_bundle(tmp_path / "b.etb").meta
    locator = meta.spec.locator(meta)
    cls = np.zeros((1, 2, synthetic.SCORE, synthetic.SCORE), np.float32)
    cls[0, 1, 3, 4] = 4.0
    outputs = {"cls": cls, "loc": np.zeros((1, 4, synthetic.SCORE, synthetic.SCORE), np.float32)}
    found = locator.locate(outputs, TargetState(200.0, 200.0, 64.0, 64.0))
    assert found.contrast == pytest.approx(4.0 - 4.0 / synthetic.SCORE**2)
    assert found.score == pytest.approx(1 / (1 + math.exp(-4.0)))


def jumping_square(before: int = 4, after: int = 8):
    """The moving square's first frames, then the square far outside the search region, still in the frame."""
    frames, truth = synthetic.moving_square(frames=before)
    far, far_truth = synthetic.moving_square(frames=after)
    moved = []
    for image in far:
        shifted = np.full_like(image, synthetic.BACKGROUND)
        shifted[200:264, 300:364] = image[80:144, 60:124]
        moved.append(shifted)
    return frames + moved, np.vstack([truth, np.tile([300.0, 200.0, 64.0, 64.0], (after, 1))])


@pytest.mark.parametrize("make", [synthetic.siamfc_bundle, synthetic.siamrpn_bundle], ids=["siamfc", "siamrpn"])
def test_long_term_re_acquires_a_target_that_jumped_out_of_the_search_region(tmp_path, make):
    bundle = make(tmp_path / "b.etb")
    frames, truth = jumping_square(after=8)
    results = {}
    for long_term in (False, True):
        tracker = SiameseTracker(bundle.meta, OnnxRuntimeBackend(bundle), long_term=long_term)
        tracker.init(frames[0], truth[0])
        results[long_term] = [tracker.update(f) for f in frames[1:]]
    for long_term, rs in results.items():
        ious = rect_iou(np.array([r.box for r in rs]), truth[1:])
        assert ious[:3].min() > 0.7 and not any(r.lost for r in rs[:3])
        assert all(r.lost == (r.score < bundle.meta.hyper.lost_threshold) for r in rs)
        if not long_term:
            # Without long-term mode the square is never found again, and the tracker says so.
            assert ious[3:].max() == 0 and all(r.lost for r in rs[-3:])
    rs = results[True]
    ious = rect_iou(np.array([r.box for r in rs]), truth[1:])
    # Mean confidences 0.75, 0.6 (not below the threshold of 0.6), then 0.4: lost on the third frame after the jump
    # (index 5). A 480 x 360 frame holds 5 x 4 tiles; scanned nearest the last place first, 4 a frame, the two
    # whose reach holds the square come 15th and 16th: it is re-acquired on the 4th frame of scanning (index 9).
    assert [r.lost for r in rs[3:11]] == [False, False, True, True, True, True, False, False]
    assert ious[9:11].min() > 0.5 and rs[9].score >= 0.9  # re-found: without long-term mode the overlap stays 0
    assert rs[9].box[2:] == pytest.approx(rs[5].box[2:])  # re-acquired at the size it was lost with


def test_long_term_tracks_like_default_while_the_target_is_not_lost(data):
    import cv2

    frames = [cv2.imread(str(p)) for p in sorted((data / "sequences" / "Crossing" / "img").glob("*.jpg"))[:25]]
    boxes = {}
    for long_term in (False, True):
        with open_tracker("edgetrack-nano-s", threads=1, long_term=long_term) as tracker:
            tracker.init(frames[0], (205, 151, 17, 50))
            results = [tracker.update(f) for f in frames[1:]]
        assert not any(r.lost for r in results)
        boxes[long_term] = [r.box for r in results]
    assert boxes[True] == boxes[False]


def test_bundles_written_before_the_lost_signal_load_and_report_it(data):
    """The shipped students' edgetrack.json predate the lost signal: they load, and the score is the confidence."""
    import cv2

    from edgetrack.runtime.pretrained import resolve

    frames = [cv2.imread(str(p)) for p in sorted((data / "sequences" / "Crossing" / "img").glob("*.jpg"))[:4]]
    for name in ("edgetrack-nano-m", "edgetrack-nano-s"):
        meta = load_bundle(resolve(name)).meta
        with open_tracker(name, threads=1) as tracker:
            tracker.init(frames[0], (205, 151, 17, 50))
            results = [tracker.update(f) for f in frames[1:]]
        assert results[0].score == 1.0  # the first tracked frame is the reference
        assert all(0.0 <= r.score <= 1.0 and r.lost == (r.score < meta.hyper.lost_threshold) for r in results)
        assert all(0.9 < r.raw_score <= 1.0 for r in results)
