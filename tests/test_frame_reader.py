"""The threaded frame reader: files lose nothing, live sources keep the newest, pacing, errors and closing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgetrack.runtime.frame_reader import FrameReader, read_timed


def numbered(count: int):
    """Frames whose first pixel is their index, to see which ones arrive."""
    for i in range(count):
        frame = np.zeros((4, 4, 3), np.uint8)
        frame[0, 0, 0] = i
        yield frame


def test_read_timed_numbers_and_times_each_frame():
    frames = list(read_timed(numbered(3), start=5))
    assert [f.index for f in frames] == [5, 6, 7] and [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 2]
    assert all(f.decode_seconds >= 0 for f in frames)
    assert frames[0].timestamp <= frames[1].timestamp <= frames[2].timestamp


def test_a_file_loses_nothing_even_when_the_consumer_is_slow():
    with FrameReader(numbered(20), capacity=2) as reader:
        seen = []
        for frame in reader:
            time.sleep(0.002)
            seen.append(frame.index)
    assert seen == list(range(20)) and reader.dropped == 0


def test_a_live_source_drops_the_oldest_so_the_consumer_gets_the_newest():
    # A 500 fps source against a consumer that needs 20 ms per frame: about nine in ten frames are dropped, and
    # each frame the consumer gets is at most one period older than the newest.
    with FrameReader(numbered(100), capacity=1, drop_oldest=True, pace_fps=500) as reader:
        seen = []
        for frame in reader:
            seen.append(frame.index)
            time.sleep(0.02)
    assert seen == sorted(seen) and seen[-1] == 99
    assert reader.dropped + len(seen) == 100 and reader.dropped > 50


def test_pacing_releases_frame_i_at_i_over_fps():
    with FrameReader(numbered(10), capacity=10, pace_fps=100) as reader:
        frames = list(reader)
    offsets = np.array([f.timestamp for f in frames]) - frames[0].timestamp
    np.testing.assert_allclose(offsets, np.arange(10) / 100, atol=0.015)


def test_an_error_in_the_reader_reaches_the_consumer_after_the_good_frames():
    def failing():
        yield from numbered(3)
        raise OSError("camera unplugged")

    reader = FrameReader(failing())
    assert [f.index for f in (next(reader), next(reader), next(reader))] == [0, 1, 2]
    with pytest.raises(OSError, match="unplugged"):
        next(reader)
    reader.close()


def test_closing_stops_the_thread_and_closes_the_source():
    closed = []

    def endless():
        try:
            while True:
                yield np.zeros((2, 2, 3), np.uint8)
        finally:
            closed.append(True)

    reader = FrameReader(endless(), capacity=2)
    next(reader)
    reader.close()
    assert not reader._thread.is_alive() and closed == [True]
