"""Track one target through a frame source: overlay, result file, recording and display, all closed cleanly.

Outputs are written to temporary files beside their destination and renamed into place when the stream ends,
however it ends (end of file, an error, or Ctrl-C), so a results file or recording is never half-written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import OutputError, SourceError
from .sources import FrameSource
from .tracker import SiameseTracker, TrackResult

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
WINDOW = "edgetrack"


@dataclass(frozen=True)
class TrackSummary:
    frames: int
    lost: int
    fps: float
    interrupted: bool

    def __str__(self) -> str:
        ending = " (interrupted)" if self.interrupted else ""
        return f"tracked {self.frames} frames at {self.fps:.0f} fps, lost in {self.lost}{ending}"


class _StagedFile:
    """A destination written through a temporary sibling that keeps its suffix (VideoWriter picks by suffix)."""

    def __init__(self, final: Path):
        self.final = Path(final)
        if not self.final.parent.is_dir():
            raise OutputError(f"cannot write {self.final}: folder {self.final.parent} does not exist")
        if not os.access(self.final.parent, os.W_OK):
            raise OutputError(f"cannot write {self.final}: folder {self.final.parent} is not writable")
        # Not mkstemp: its 0600 mode would outlive the rename; the pid keeps concurrent runs apart.
        self.path = self.final.parent / f".{self.final.stem}.{os.getpid()}.partial{self.final.suffix}"

    def commit(self) -> None:
        os.replace(self.path, self.final)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def draw_overlay(frame: np.ndarray, result: TrackResult, fps: float) -> None:
    x, y, w, h = (int(round(v)) for v in result.box)
    colour = (0, 0, 255) if result.lost else (0, 255, 0)
    cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
    label = f"score {result.score:.2f}  {fps:.0f} fps" + ("  LOST" if result.lost else "")
    cv2.putText(frame, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)


def _display_available(show: bool | None) -> bool:
    if show is False or (show is None and not os.environ.get("DISPLAY") and os.name != "nt"):
        return False
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        # opencv-python-headless (the base install) has no GUI; tracking goes on without a window.
        return False


class _Outputs:
    """Where each tracked frame goes: the results file, the recording and the window."""

    def __init__(self, results: Path | None, save: Path | None, show: bool | None, fps: float):
        self._results = _StagedFile(results) if results else None
        self._video = _StagedFile(save) if save else None
        self._results_file = open(self._results.path, "w") if self._results else None
        self._writer: cv2.VideoWriter | None = None
        self._fps = fps
        self._display = _display_available(show)

    def emit(self, frame: np.ndarray, result: TrackResult, fps: float) -> bool:
        """Record one frame; False when the viewer asked to stop (q or Esc)."""
        if self._results_file:
            x, y, w, h = result.box
            self._results_file.write(f"{x:.2f},{y:.2f},{w:.2f},{h:.2f},{result.score:.4f},{int(result.lost)}\n")
        if self._video or self._display:
            draw_overlay(frame, result, fps)
        if self._video:
            if self._writer is None:
                self._writer = _open_writer(self._video, self._fps, frame)
            self._writer.write(frame)
        if self._display:
            cv2.imshow(WINDOW, frame)
            return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)
        return True

    def close(self, keep: bool) -> None:
        """Flush and close everything; keep the files when any frame was tracked, else remove them."""
        if self._results_file:
            self._results_file.close()
        if self._writer is not None:
            self._writer.release()
        if self._display:
            cv2.destroyWindow(WINDOW)
        for staged in (self._results, self._video):
            if staged:
                staged.commit() if keep else staged.discard()


def track_stream(
    tracker: SiameseTracker,
    source: FrameSource,
    box,
    results: Path | None = None,
    save: Path | None = None,
    show: bool | None = None,
) -> TrackSummary:
    """Run ``tracker`` from ``box`` in the first frame to the end of ``source``, or to Ctrl-C or ``q``."""
    outputs = _Outputs(results, save, show, source.fps)
    frames = lost = 0
    update_seconds = 0.0
    interrupted = False
    try:
        stream = source.frames()
        first = next(stream, None)
        if first is None:
            raise SourceError(f"{source.path} has no frames")
        tracker.init(first, box)
        frames = 1
        going = outputs.emit(first, TrackResult(tuple(float(v) for v in box), 1.0, False), 0.0)
        for frame in stream if going else ():
            start = time.perf_counter()
            result = tracker.update(frame)
            update_seconds += time.perf_counter() - start
            frames += 1
            lost += result.lost
            if not outputs.emit(frame, result, (frames - 1) / update_seconds):
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        outputs.close(keep=frames > 0)
    fps = (frames - 1) / update_seconds if update_seconds > 0 else 0.0
    return TrackSummary(frames=frames, lost=lost, fps=fps, interrupted=interrupted)


def _open_writer(staged: _StagedFile, fps: float, frame: np.ndarray) -> cv2.VideoWriter:
    fourcc = FOURCC.get(staged.final.suffix.lower())
    if fourcc is None:
        raise OutputError(f"cannot record to {staged.final}: use a .mp4 or .avi file")
    height, width = frame.shape[:2]
    writer = cv2.VideoWriter(str(staged.path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise OutputError(f"cannot record to {staged.final}: OpenCV could not open a {fourcc} writer there")
    return writer
