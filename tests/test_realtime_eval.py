"""Latency-aware evaluation against a camera (``runtime.realtime``), with a stand-in tracker whose calls take a known
time on a fake clock. The camera runs at 8 fps so every time in these tests is exact in binary: one frame period is
0.125 s. Expected frames, boxes and scores are worked out by hand in the comments."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgetrack.runtime import realtime
from edgetrack.runtime.datasets import Sequence
from edgetrack.runtime.errors import InputError
from edgetrack.runtime.evaluate import SequenceResult, track_sequence
from edgetrack.runtime.realtime import newest_frame, run_realtime, score_timeline, track_sequence_realtime
from edgetrack.runtime.tracker import TrackResult

FPS = 8.0
PERIOD = 1 / FPS
FRAMES = 12


def box_of(index: int) -> tuple[float, float, float, float]:
    """The target's box on frame ``index``: 19 px wide, moving 3 px a frame, so a box k frames old overlaps it
    (19 - 3k) / (19 + 3k)."""
    return (3.0 * index, 0.0, 19.0, 10.0)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowTracker:
    """Reads the frame's index from its pixels and answers that frame's true box; init and update advance the fake
    clock by a fixed time."""

    def __init__(self, clock: FakeClock, init_seconds: float, update_seconds: float):
        self.clock, self.init_seconds, self.update_seconds = clock, init_seconds, update_seconds

    def init(self, frame, box):
        self.clock.now += self.init_seconds
        return box

    def update(self, frame) -> TrackResult:
        self.clock.now += self.update_seconds
        index = round(frame[0, 0, 0] / 10)  # a video's JPEG may move it a little
        return TrackResult(box_of(index), 1.0, index % 2 == 1)


@pytest.fixture()
def sequence(tmp_path) -> Sequence:
    """Frame i is a PNG filled with 10 * i; the target is absent on frame 8."""
    paths = []
    for index in range(FRAMES):
        path = tmp_path / f"{index:04d}.png"
        cv2.imwrite(str(path), np.full((16, 16, 3), 10 * index, np.uint8))
        paths.append(path)
    groundtruth = np.array([box_of(i) for i in range(FRAMES)])
    groundtruth[8] = np.nan
    return Sequence("moving", groundtruth, frame_paths=tuple(paths))


def test_latency_of_two_and_a_half_frames(sequence):
    # In frame periods: init ends at 0.5; frame 0 is done, so wait for frame 1 (at 1), done 3.5; newest 3, done
    # 6.0; frame 6 arrives exactly then, done 8.5; newest 8, done 11.0; frame 11, done 13.5 (after the last
    # frame, so never shown).
    clock = FakeClock()
    tracker = SlowTracker(clock, init_seconds=0.5 * PERIOD, update_seconds=2.5 * PERIOD)
    ticks = []
    result = track_sequence_realtime(tracker, sequence, FPS, clock=clock, on_frame=lambda: ticks.append(1))
    assert isinstance(result, SequenceResult)
    assert result.updated_frames.tolist() == [1, 3, 6, 8, 11]
    assert result.skipped_frames.tolist() == [2, 4, 5, 7, 9, 10]
    # Strict LAE: frame i shows the latest result done by i; done at 6.0 and 11.0 count on frames 6 and 11.
    shown = [0, 0, 0, 0, 1, 1, 3, 3, 3, 6, 6, 8]
    assert result.shown_from.tolist() == shown
    np.testing.assert_array_equal(result.boxes, [box_of(j) for j in shown])
    assert result.frames == FRAMES and len(ticks) == FRAMES - 1
    assert result.update_seconds == pytest.approx(5 * 2.5 * PERIOD)
    assert result.fps == pytest.approx(1 / (2.5 * PERIOD))
    # Frames behind: 0,1,2,3,3,4,3,4,5,3,4,3 -> 35 / 12.
    assert result.mean_frames_behind == pytest.approx(35 / 12)
    # The present frames (all but 8) are 0,1,2 frames behind once each, 3 behind five times, 4 behind three times.
    # A box k behind has overlap (19-3k)/(19+3k): 1, 16/22, 13/25, 10/28, 7/31, above 20, 15, 11, 8 and 5 of
    # the 21 thresholds 0, 0.05, ..., 1: (20 + 15 + 11 + 5*8 + 3*5) / (21 * 11).
    assert result.scores.auc == pytest.approx(101 / 231)
    # Lost is raised on odd updated frames: shown on 4, 5 (from 1), 6, 7, 8 (from 3), none of which is absent
    # except 8, and never shown on 9, 10 (from 6) nor 11 (from 8).
    assert (result.lost.lost_when_absent, result.lost.lost_when_present) == (1, 4)


def test_init_time_delays_the_first_update(sequence):
    # Init ends at 2.5 periods: frame 2 is the newest, so frame 1 is skipped; every update then beats the camera.
    clock = FakeClock()
    tracker = SlowTracker(clock, init_seconds=2.5 * PERIOD, update_seconds=0.5 * PERIOD)
    result = track_sequence_realtime(tracker, sequence, FPS, clock=clock)
    assert result.updated_frames.tolist() == list(range(2, FRAMES))
    assert result.skipped_frames.tolist() == [1]
    assert result.shown_from.tolist() == [0, 0, 0] + list(range(2, FRAMES - 1))


def test_faster_than_the_camera_is_offline_with_one_frame_of_permitted_latency(sequence):
    clock = FakeClock()
    tracker = SlowTracker(clock, 0.5 * PERIOD, 0.5 * PERIOD)
    fast = track_sequence_realtime(tracker, sequence, FPS, permitted_latency=1.0, clock=clock)
    offline = track_sequence(SlowTracker(FakeClock(), 0.0, 0.0), sequence)
    assert fast.updated_frames.tolist() == list(range(1, FRAMES)) and fast.skipped_frames.size == 0
    np.testing.assert_array_equal(fast.boxes, offline.boxes)
    assert fast.scores == offline.scores
    assert fast.lost == offline.lost


def test_strict_rule_shows_a_fast_tracker_one_frame_late(sequence):
    # Each result is done half a period after its frame arrived, so by frame i only frame i-1's result is done.
    clock = FakeClock()
    timeline = run_realtime(SlowTracker(clock, 0.5 * PERIOD, 0.5 * PERIOD), sequence, FPS, clock=clock)
    np.testing.assert_array_equal(timeline.done, (np.arange(1, FRAMES) + 0.5) * PERIOD)
    strict = score_timeline(sequence, timeline, permitted_latency=0.0)
    assert strict.shown_from.tolist() == [0, 0] + list(range(1, FRAMES - 1))
    half = score_timeline(sequence, timeline, permitted_latency=0.5)
    assert half.shown_from.tolist() == list(range(FRAMES))


def test_a_result_is_never_shown_on_an_older_frame(sequence):
    # An update that takes no time is done when its frame arrives; with a full period permitted it would be done
    # by the previous frame's deadline too.
    clock = FakeClock()
    result = track_sequence_realtime(SlowTracker(clock, 0.0, 0.0), sequence, FPS, permitted_latency=1.0, clock=clock)
    assert result.shown_from.tolist() == list(range(FRAMES))


def test_only_the_processed_frames_are_decoded_and_decoding_takes_no_camera_time(sequence, monkeypatch):
    clock = FakeClock()
    decoded = []

    read_images = realtime.read_images

    def slow_read(paths):
        decoded.extend(p.name for p in paths)
        clock.now += 10.0  # a very slow disk, which the camera does not have
        yield from read_images(paths)

    monkeypatch.setattr(realtime, "read_images", slow_read)
    result = track_sequence_realtime(SlowTracker(clock, 0.5 * PERIOD, 2.5 * PERIOD), sequence, FPS, clock=clock)
    assert result.updated_frames.tolist() == [1, 3, 6, 8, 11]
    assert decoded == [f"{i:04d}.png" for i in (0, 1, 3, 6, 8, 11)]


def test_video_frames_are_read_in_order(tmp_path, sequence):
    video = tmp_path / "moving.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (16, 16))
    for path in sequence.frame_paths:
        writer.write(cv2.imread(str(path)))
    writer.release()
    from_video = Sequence("moving", sequence.groundtruth, video=video)
    clock = FakeClock()
    result = track_sequence_realtime(SlowTracker(clock, 0.5 * PERIOD, 2.5 * PERIOD), from_video, FPS, clock=clock)
    assert result.shown_from.tolist() == [0, 0, 0, 0, 1, 1, 3, 3, 3, 6, 6, 8]


@pytest.mark.parametrize(("t", "expected"), [(0.0, 0), (0.124, 0), (0.125, 1), (3 / 8, 3), (0.999, 7), (5.0, 11)])
def test_newest_frame(t, expected):
    assert newest_frame(t, FPS, FRAMES) == expected


def test_newest_frame_at_an_arrival_that_does_not_round_trip():
    # At 30 fps frame 123 arrives at 123 / 30, which times 30 is 122.99999999999999 in floating point.
    assert int(123 / 30 * 30) == 122
    assert newest_frame(123 / 30, 30.0, 200) == 123


def test_bad_rates_are_refused(sequence):
    clock = FakeClock()
    with pytest.raises(InputError, match="frame rate"):
        track_sequence_realtime(SlowTracker(clock, 0.0, 0.0), sequence, 0.0, clock=clock)
    with pytest.raises(InputError, match="permitted latency"):
        track_sequence_realtime(SlowTracker(clock, 0.0, 0.0), sequence, FPS, permitted_latency=1.5, clock=clock)
    assert clock.now == 100.0  # refused before it ran
