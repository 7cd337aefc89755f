"""The tracking loop: every family follows a target with a known path; odd frames and boxes behave as defined."""

from __future__ import annotations

import numpy as np
import pytest
import synthetic

from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.errors import InputError
from edgetrack.runtime.metrics import rect_iou
from edgetrack.runtime.tracker import SiameseTracker


def tracker_for(bundle):
    return SiameseTracker(bundle.meta, OnnxRuntimeBackend(bundle))


def follow(tracker, frames, init):
    tracker.init(frames[0], init)
    return [tracker.update(f) for f in frames[1:]]


@pytest.mark.parametrize("make", [synthetic.siamfc_bundle, synthetic.siamrpn_bundle], ids=["siamfc", "siamrpn"])
def test_family_follows_a_moving_square(tmp_path, make):
    frames, truth = synthetic.moving_square()
    results = follow(tracker_for(make(tmp_path / "b.etb")), frames, truth[0])
    boxes = np.array([r.box for r in results])
    ious = rect_iou(boxes, truth[1:])
    assert ious.min() > 0.7, ious
    assert not any(r.lost for r in results)


def test_nanotrack_follows_a_moving_square(nanotrack_bundles):
    frames, truth = synthetic.moving_square()
    results = follow(tracker_for(nanotrack_bundles["v2"]), frames, truth[0])
    assert rect_iou(np.array([r.box for r in results]), truth[1:]).min() > 0.7


@pytest.mark.parametrize("make", [synthetic.siamfc_bundle, synthetic.siamrpn_bundle], ids=["siamfc", "siamrpn"])
def test_family_reports_lost_when_the_square_disappears(tmp_path, make):
    frames, truth = synthetic.moving_square(frames=3)
    tracker = tracker_for(make(tmp_path / "b.etb"))
    tracker.init(frames[0], truth[0])
    assert not tracker.update(frames[1]).lost
    assert tracker.update(np.full_like(frames[0], synthetic.BACKGROUND)).lost


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_nanotrack_lost_when_the_target_leaves(nanotrack_bundles, data, version):
    """Tracked, the Crossing pedestrian is never lost; swap in another scene and most frames are."""
    import cv2

    tracker = tracker_for(nanotrack_bundles[version])
    crossing = sorted((data / "sequences" / "Crossing" / "img").glob("*.jpg"))
    tracker.init(cv2.imread(str(crossing[0])), (205, 151, 17, 50))
    assert not any(tracker.update(cv2.imread(str(p))).lost for p in crossing[1:40])
    other = sorted((data / "sequences" / "tennis_unlabeled").glob("*.jpg"))[:40]
    lost = [tracker.update(cv2.resize(cv2.imread(str(p)), (360, 240))).lost for p in other]
    assert sum(lost) > len(lost) / 2


def test_grey_and_bgra_frames_track_like_bgr(nanotrack_bundles, data):
    import cv2

    frames = [cv2.imread(str(p)) for p in sorted((data / "sequences" / "Crossing" / "img").glob("*.jpg"))[:6]]
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    as_bgr = [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in grey]
    bgra = [cv2.cvtColor(f, cv2.COLOR_BGR2BGRA) for f in frames]
    box = (205, 151, 17, 50)
    bundle = nanotrack_bundles["v2"]
    assert [r.box for r in follow(tracker_for(bundle), grey, box)] == [r.box for r in follow(tracker_for(bundle), as_bgr, box)]
    assert [r.box for r in follow(tracker_for(bundle), bgra, box)] == [r.box for r in follow(tracker_for(bundle), frames, box)]
    single_channel = [g[:, :, None] for g in grey]
    assert [r.box for r in follow(tracker_for(bundle), single_channel, box)] == [r.box for r in follow(tracker_for(bundle), as_bgr, box)]


def test_frame_size_change_is_refused(nanotrack_bundles):
    tracker = tracker_for(nanotrack_bundles["v2"])
    tracker.init(np.zeros((240, 320, 3), np.uint8), (100, 100, 30, 30))
    with pytest.raises(InputError, match=r"changed mid-stream from 320x240 to 640x480"):
        tracker.update(np.zeros((480, 640, 3), np.uint8))


@pytest.mark.parametrize(
    "box, message",
    [
        ((10, 10, 0, 20), "no area"),
        ((10, 10, 20, -1), "no area"),
        ((float("nan"), 10, 20, 20), "no area"),
        ((400, 10, 20, 20), "outside the 320x240 frame"),
        ((-30, 10, 20, 20), "outside the 320x240 frame"),
        ((10, 240, 20, 20), "outside the 320x240 frame"),
        ((1, 2, 3), "four numbers"),
    ],
)
def test_bad_initial_box(nanotrack_bundles, box, message):
    tracker = tracker_for(nanotrack_bundles["v2"])
    with pytest.raises(InputError, match=message):
        tracker.init(np.zeros((240, 320, 3), np.uint8), box)


def test_partly_visible_initial_box_is_accepted(nanotrack_bundles):
    tracker = tracker_for(nanotrack_bundles["v2"])
    tracker.init(np.zeros((240, 320, 3), np.uint8), (-10, -10, 30, 30))
    assert tracker.update(np.zeros((240, 320, 3), np.uint8)).box is not None


@pytest.mark.parametrize(
    "frame, message",
    [
        (np.zeros((240, 320, 3), np.float32), "uint8"),
        (np.zeros((240, 320, 2), np.uint8), "shape"),
        ([[0]], "uint8"),
    ],
)
def test_unusable_frames(nanotrack_bundles, frame, message):
    tracker = tracker_for(nanotrack_bundles["v2"])
    with pytest.raises(InputError, match=message):
        tracker.init(frame, (10, 10, 20, 20))


def test_update_before_init(nanotrack_bundles):
    with pytest.raises(InputError, match="before init"):
        tracker_for(nanotrack_bundles["v2"]).update(np.zeros((240, 320, 3), np.uint8))


def test_hot_path_allocates_no_frame_crop_or_tensor(nanotrack_bundles, data):
    """An update may make small numpy temporaries over the score map, but never a buffer the size of a frame
    (518 KB here), a crop (195 KB) or an input tensor (780 KB): those are the tracker's own, reused."""
    import tracemalloc

    import cv2

    tracker = tracker_for(nanotrack_bundles["v2"])
    paths = sorted((data / "sequences" / "bag" / "color").glob("*.jpg"))[:30]
    frames = [cv2.imread(str(p)) for p in paths]
    # the bag target is near the frame edge, so these updates take the padded-crop path too
    tracker.init(frames[0], (292.23, 128.36, 145.96, 132.47))
    tracker.update(frames[1])  # the padding scratch buffer may grow once
    outputs = tracker.backend.run_search()
    tracemalloc.start()
    try:
        peaks = []
        for frame in frames[2:]:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            tracker.update(frame)
            peaks.append(tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()
    assert max(peaks) < 64_000, max(peaks)
    assert tracker.backend.run_search() is outputs  # the outputs come back in the same buffers
