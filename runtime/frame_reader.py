"""Reading frames on a thread into a bounded queue, so decoding overlaps tracking.

A live source (a camera, a stream, or a file played at a fixed rate) must not fall behind: when the queue is
full the oldest frame is dropped, so the tracker always gets the newest. A file read offline drops nothing: the
reader waits for room instead. Every frame carries the time it became available, so latency can be counted
from there to the result.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    #: position in the source, counting dropped frames
    index: int
    #: ``time.perf_counter()`` when the frame became available to the tracker
    timestamp: float
    #: time spent reading and decoding it
    decode_seconds: float


def read_timed(images: Iterable[np.ndarray], start: int = 0) -> Iterator[Frame]:
    """``images`` as frames, each timed while it decodes, on the caller's thread."""
    iterator = iter(images)
    index = start
    while True:
        began = time.perf_counter()
        image = next(iterator, None)
        if image is None:
            return
        now = time.perf_counter()
        yield Frame(image, index, now, now - began)
        index += 1


class FrameReader:
    """Iterates the frames of ``images`` read on a background thread.

    ``drop_oldest``: a full queue loses its oldest frame (live sources) instead of making the reader wait (files).
    ``pace_fps``: release frame i no earlier than i / pace_fps seconds after the start, like a camera.
    An error in the reader is raised again in the consumer, after the frames read before it.
    """

    def __init__(self, images: Iterable[np.ndarray], capacity: int = 4, drop_oldest: bool = False, pace_fps: float | None = None):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.pace_fps = pace_fps
        self.dropped = 0
        self._images = images
        self._queue: deque[Frame] = deque()
        self._ready = threading.Condition()
        self._finished = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="edgetrack-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        start = time.perf_counter()
        try:
            for frame in read_timed(self._images):
                if self.pace_fps:
                    delay = start + frame.index / self.pace_fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    frame = Frame(frame.image, frame.index, time.perf_counter(), frame.decode_seconds)
                if not self._put(frame):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which decides
            self._error = exc
        finally:
            # Release the source (a capture, a camera) from the thread that used it.
            close = getattr(self._images, "close", None)
            if close is not None:
                close()
            with self._ready:
                self._finished = True
                self._ready.notify_all()

    def _put(self, frame: Frame) -> bool:
        with self._ready:
            while len(self._queue) >= self.capacity and not self._closed:
                if self.drop_oldest:
                    self._queue.popleft()
                    self.dropped += 1
                else:
                    self._ready.wait()
            if self._closed:
                return False
            self._queue.append(frame)
            self._ready.notify_all()
            return True

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        with self._ready:
            while not self._queue and not self._finished:
                self._ready.wait()
            if self._queue:
                frame = self._queue.popleft()
                self._ready.notify_all()
                return frame
        if self._error is not None:
            raise self._error
        raise StopIteration

    def close(self) -> None:
        """Stop reading; frames still queued are discarded. Safe to call twice."""
        with self._ready:
            self._closed = True
            self._queue.clear()
            self._ready.notify_all()
        self._thread.join()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
