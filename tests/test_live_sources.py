"""Live sources without a camera: stand-ins built from a real video answer the same OpenCV capture calls
(isOpened, read, get, release) and fail, lag or race the tracker on purpose. The CSI pipeline string is checked
against NVIDIA's documented nvarguscamerasrc form."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.errors import InputError, SourceError
from edgetrack.runtime.sources import CsiMode, LiveStream, Reconnect, csi_pipeline, is_live, open_live, open_source
from edgetrack.runtime.track_session import track_stream
from edgetrack.runtime.tracker import SiameseTracker

from test_cli import edgetrack, one_error_line

FAST_RETRY = Reconnect(attempts=3, first_delay=0.01, max_delay=0.04)


class Broadcast:
    """A live scene that goes on whether anyone watches: frame i is on air from i / fps seconds after start.
    ``outages`` are frame-index ranges during which every read fails (a cable pulled); ``refusals`` is how many
    reopen attempts fail before the source is back. A camera never ends, so when the frames run out the viewer
    presses Ctrl-C."""

    def __init__(self, frames: list[np.ndarray], fps: float, outages=(), refusals: int = 0):
        self.frames, self.fps, self.outages, self.refusals = frames, fps, list(outages), refusals
        self.opens = 0
        self.start = time.perf_counter()
        self.next_index = 0

    def on_air(self) -> int:
        return int((time.perf_counter() - self.start) * self.fps)

    def open(self) -> StandInCapture:
        self.opens += 1
        if self.opens > 1 and self.refusals > 0:
            self.refusals -= 1
            return StandInCapture(self, opened=False)
        return StandInCapture(self, opened=True)


class StandInCapture:
    """What cv2.VideoCapture answers, over a Broadcast: read() blocks until the next frame is on air."""

    def __init__(self, broadcast: Broadcast, opened: bool):
        self.broadcast, self.opened = broadcast, opened

    def isOpened(self) -> bool:
        return self.opened

    def get(self, prop: int) -> float:
        return self.broadcast.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        b = self.broadcast
        if b.next_index >= len(b.frames):
            raise KeyboardInterrupt
        if not self.opened:
            return False, None
        # A camera delivers the newest frame once it is on air, never one from the past.
        b.next_index = max(b.next_index, b.on_air())
        delay = b.start + b.next_index / b.fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        index = b.next_index
        if index >= len(b.frames):
            raise KeyboardInterrupt
        for first, last in b.outages:
            if first <= index < last:
                b.outages.remove((first, last))
                b.next_index = last  # the frames of the outage are lost for good
                self.opened = False
                return False, None
        b.next_index += 1
        return True, b.frames[index].copy()

    def release(self) -> None:
        self.opened = False


@pytest.fixture(scope="module")
def bag_frames(data) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(data / "videos" / "bag.avi"))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    return frames


BAG_INIT = (292, 112, 106, 144)


class SlowTracker(SiameseTracker):
    """The real tracker on a board ``seconds`` slower per frame than this machine."""

    seconds = 0.0

    def update(self, frame):
        time.sleep(self.seconds)
        return super().update(frame)


def slow_tracker(bundle, seconds: float) -> SlowTracker:
    tracker = SlowTracker(bundle.meta, open_backend(bundle))
    tracker.seconds = seconds
    return tracker


def test_csi_pipeline_is_the_documented_nvarguscamerasrc_form():
    assert csi_pipeline(0) == (
        "nvarguscamerasrc sensor-id=0 ! "
        "video/x-raw(memory:NVMM), width=(int)1280, height=(int)720, framerate=(fraction)30/1, format=(string)NV12 ! "
        "nvvidconv flip-method=0 ! "
        "video/x-raw, width=(int)1280, height=(int)720, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1"
    )
    upside_down = csi_pipeline(1, CsiMode(width=1920, height=1080, fps=60, flip=2, out_width=960, out_height=540))
    assert upside_down.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=(int)1920, height=(int)1080, framerate=(fraction)60/1")
    assert "nvvidconv flip-method=2 ! video/x-raw, width=(int)960, height=(int)540, format=(string)BGRx" in upside_down


def test_live_specs_are_told_from_paths():
    for spec in ("camera:0", "camera:12", "csi:0", "rtsp://10.0.0.2:8554/cam", "http://cam.local/stream.mjpg", "HTTPS://x/y"):
        assert is_live(spec), spec
    for spec in ("camera0.mp4", "clips/camera:0", "csi", "video.avi", "/data/rtsp"):
        assert not is_live(spec), spec
    with pytest.raises(SourceError, match="not a live source"):
        open_live("video.avi")


def test_a_source_that_never_opens_fails_at_once_with_what_to_check():
    never = Broadcast([], fps=30)
    with pytest.raises(SourceError, match="cam does not open: plug it in"):
        LiveStream("cam", lambda: StandInCapture(never, opened=False), "plug it in")
    with pytest.raises(SourceError, match="camera:57 does not open: check that the camera is connected"):
        open_source("camera:57")


def test_a_stream_that_drops_mid_stream_is_reopened_and_goes_on(bag_frames):
    broadcast = Broadcast(bag_frames[:60], fps=300, outages=[(20, 25)], refusals=2)
    stream = LiveStream("stand-in", broadcast.open, "", FAST_RETRY)
    got = []
    with pytest.raises(KeyboardInterrupt):
        for frame in stream.frames():
            got.append(frame)
    # Two refused reopenings, then the third attempt is back: one reconnection. The frames of the outage and
    # those aired while reconnecting (0.01 + 0.02 + 0.04 s at 300 fps) are gone; the stream then runs to its end.
    assert stream.reconnects == 1 and broadcast.opens == 4
    assert 20 <= len(got) <= 40
    np.testing.assert_array_equal(got[19], bag_frames[19])
    np.testing.assert_array_equal(got[-1], bag_frames[59])


def test_a_stream_that_never_comes_back_ends_with_one_clear_line(bag_frames):
    broadcast = Broadcast(bag_frames[:30], fps=300, outages=[(10, 29)], refusals=99)
    stream = LiveStream("rtsp://drone/cam", broadcast.open, "", FAST_RETRY)
    frames = stream.frames()
    with pytest.raises(SourceError, match=r"rtsp://drone/cam stopped delivering frames and did not come back in 3 attempts"):
        for _ in frames:
            pass


def test_a_source_slower_than_the_tracker_loses_nothing(nanotrack_bundles, bag_frames):
    tracker = slow_tracker(nanotrack_bundles["v2"], 0.0)
    broadcast = Broadcast(bag_frames[:40], fps=20)
    stream = LiveStream("slow camera", broadcast.open, "")
    summary = track_stream(tracker, stream, BAG_INIT, show=False)
    assert summary.frames == 40 and summary.dropped == 0 and summary.interrupted
    # The tracker waits for each frame, so a result follows its frame by about one update (a few ms), within one
    # frame period; 20 fps leaves a busy machine ten times that before the bound means a backlog.
    assert summary.latency_max_ms < 1000 / 20


def test_a_source_faster_than_the_tracker_drops_frames_and_latency_stays_bounded(nanotrack_bundles, bag_frames, tmp_path):
    # 500 fps against a tracker that needs 10 ms a frame: about four in five frames are stale by the time the
    # tracker is free and are dropped. Without dropping, the backlog would grow by 4 frames (8 ms) per update
    # and the last result would come about 0.8 s after its frame; the bound leaves a busy machine room below that.
    tracker = slow_tracker(nanotrack_bundles["v2"], 0.010)
    broadcast = Broadcast(bag_frames[:196], fps=500)
    stream = LiveStream("fast camera", broadcast.open, "")
    results = tmp_path / "boxes.txt"
    summary = track_stream(tracker, stream, BAG_INIT, results=results, show=False)
    assert summary.dropped > summary.frames and summary.frames + summary.dropped <= 196
    assert summary.latency_max_ms < 100
    assert len(results.read_text().splitlines()) == summary.frames


def test_a_file_is_never_dropped_however_slow_the_tracker(nanotrack_bundles, data):
    source = open_source(data / "videos" / "bag.avi")
    summary = track_stream(slow_tracker(nanotrack_bundles["v2"], 0.002), source, BAG_INIT, show=False)
    assert summary.frames == 196 and summary.dropped == 0


def test_without_init_and_without_a_window_the_user_is_told_to_give_one(nanotrack_bundles, data, tmp_path):
    source = open_source(data / "videos" / "bag.avi")
    tracker = slow_tracker(nanotrack_bundles["v2"], 0.0)
    with pytest.raises(InputError, match="give the target with --init"):
        track_stream(tracker, source, None, results=tmp_path / "r.txt", show=False)
    assert list(tmp_path.iterdir()) == []
    line = one_error_line(edgetrack("track", nanotrack_bundles["v2"].path, "--source", data / "videos" / "bag.avi", "--no-show"))
    assert "give the target with --init" in line


def test_cli_reports_a_camera_that_never_opens(nanotrack_bundles):
    line = one_error_line(edgetrack("track", nanotrack_bundles["v2"].path, "--source", "camera:57", "--init", "1,1,5,5", "--no-show"))
    assert "camera:57 does not open" in line
