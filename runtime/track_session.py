"""Track one target through a frame source: overlay, result file, recording and display, all closed cleanly.

Frames are read on a thread (``frame_reader``): a live source keeps only the newest frame, so a slow tracker
sees the present rather than a growing backlog; a file loses nothing. Outputs are written to temporary files
beside their destination and renamed into place when the stream ends, however it ends (end of file, an error,
Ctrl-C or SIGTERM), so a results file or recording is never half-written; one that cannot be written (a full
disk) is removed with its sibling, and the destinations are checked before the first frame is read.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from .errors import InputError, OutputError, SourceError
from .frame_reader import FrameReader
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
    #: live sources: frames the reader dropped because newer ones had arrived, and reopenings after a drop-out
    dropped: int = 0
    reconnects: int = 0
    #: median and worst time from a frame's arrival to its result, ms
    latency_p50_ms: float = 0.0
    latency_max_ms: float = 0.0
    #: the signal that stopped the stream: SIGINT (Ctrl-C), SIGTERM (a service stop), or 0
    stop_signal: int = 0

    @property
    def exit_code(self) -> int:
        """The shell's code for how the stream ended: 128 + the stop signal, or 0."""
        return 128 + self.stop_signal if self.stop_signal else 0

    def __str__(self) -> str:
        ending = " (interrupted)" if self.interrupted else ""
        text = f"tracked {self.frames} frames at {self.fps:.0f} fps, lost in {self.lost}"
        text += f"; latency {self.latency_p50_ms:.1f} ms median, {self.latency_max_ms:.1f} ms worst"
        if self.dropped or self.reconnects:
            text += f"; dropped {self.dropped} stale frames, reconnected {self.reconnects} times"
        return text + ending


class _StagedFile:
    """A destination written through a temporary sibling that keeps its suffix (VideoWriter picks by suffix)."""

    def __init__(self, final: Path):
        self.final = Path(final)
        if self.final.is_dir():
            raise OutputError(f"cannot write {self.final}: it is a folder")
        if not self.final.parent.is_dir():
            raise OutputError(f"cannot write {self.final}: folder {self.final.parent} does not exist")
        if not os.access(self.final.parent, os.W_OK):
            raise OutputError(f"cannot write {self.final}: folder {self.final.parent} is not writable")
        # Not mkstemp: its 0600 mode would outlive the rename; the pid keeps concurrent runs apart.
        self.path = self.final.parent / f".{self.final.stem}.{os.getpid()}.partial{self.final.suffix}"

    def failed(self, exc: OSError) -> OutputError:
        """The one line that says why this file could not be written."""
        return OutputError(f"cannot write {self.final}: {exc.strerror or exc}")

    def open_text(self) -> TextIO:
        try:
            return open(self.path, "w")
        except OSError as exc:
            raise self.failed(exc) from None

    def commit(self) -> None:
        try:
            os.replace(self.path, self.final)
        except OSError as exc:
            raise self.failed(exc) from None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def draw_overlay(frame: np.ndarray, result: TrackResult, fps: float) -> None:
    x, y, w, h = (int(round(v)) for v in result.box)
    colour = (0, 0, 255) if result.lost else (0, 255, 0)
    cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
    label = f"score {result.score:.2f}  {fps:.0f} fps" + ("  LOST" if result.lost else "")
    cv2.putText(frame, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)


def select_target(frame: np.ndarray) -> tuple[float, float, float, float] | None:
    """Let the viewer drag a box around the target; None when they cancel (Esc or an empty box)."""
    x, y, w, h = cv2.selectROI(WINDOW, frame, showCrosshair=True, fromCenter=False)
    return (float(x), float(y), float(w), float(h)) if w > 0 and h > 0 else None


def _display_available(show: bool | None) -> bool:
    if show is False or (show is None and not os.environ.get("DISPLAY") and os.name != "nt"):
        return False
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        # opencv-python-headless (the base install) has no GUI; tracking goes on without a window.
        return False


#: What the viewer asked for with a key.
CONTINUE, STOP, RESELECT = "continue", "stop", "reselect"
KEY_HINT = "r: select again   q: quit"


class _Outputs:
    """Where each tracked frame goes: the results file, the recording and the window."""

    def __init__(self, results: Path | None, save: Path | None, show: bool | None, fps: float):
        self._fourcc = _fourcc(Path(save)) if save else None
        if results and save and Path(results).resolve() == Path(save).resolve():
            raise OutputError(f"cannot write the results and the recording both to {save}: give each its own file")
        self._results = _StagedFile(results) if results else None
        self._video = _StagedFile(save) if save else None
        self._staged = tuple(staged for staged in (self._results, self._video) if staged)
        self._results_file = self._results.open_text() if self._results else None
        self._writer: cv2.VideoWriter | None = None
        self._fps = fps
        self.display = _display_available(show)

    def emit(self, frame: np.ndarray, result: TrackResult, fps: float) -> str:
        """Record one frame; return what the viewer asked for (q or Esc: stop, r: select the target again)."""
        if self._results_file:
            x, y, w, h = result.box
            try:
                self._results_file.write(f"{x:.2f},{y:.2f},{w:.2f},{h:.2f},{result.score:.4f},{int(result.lost)}\n")
            except OSError as exc:
                raise self._results.failed(exc) from None
        if self._video or self.display:
            # The recording carries the overlay; the key hint is for the window only.
            draw_overlay(frame, result, fps)
        if self._video:
            if self._writer is None:
                self._writer = _open_writer(self._video, self._fourcc, self._fps, frame)
            self._writer.write(frame)
        if self.display:
            cv2.putText(frame, KEY_HINT, (8, frame.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            cv2.imshow(WINDOW, frame)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27):
                return STOP
            if key == ord("r"):
                return RESELECT
        return CONTINUE

    def close(self, keep: bool) -> None:
        """Flush and close everything, then put the files in place when ``keep``; a file that is not put in place
        (``keep`` false, or a write that failed) is removed."""
        if self.display:
            cv2.destroyWindow(WINDOW)
        try:
            self._finish()
            if keep:
                for staged in self._staged:
                    staged.commit()
        finally:
            for staged in self._staged:
                staged.discard()

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.release()
        if self._results_file:
            try:
                self._results_file.close()
            except OSError as exc:
                raise self._results.failed(exc) from None


class _StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (a service stop: systemd, docker stop) raise KeyboardInterrupt, so the stream
    ends with its files closed, playable and kept. A signal that comes while a frame is being recorded, or the
    files closed, waits until that is done (``hold`` .. ``release``), so the results file and the recording always
    end on the same frame.

    Python lets only the main thread install handlers; elsewhere, and for a signal that is ignored (a background
    job's Ctrl-C), the handler in place stays. The previous handlers come back on exit.
    """

    def __init__(self):
        self.received = 0
        self._holding = False
        self._previous: dict[int, Callable | int] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) not in (signal.SIG_IGN, None):
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        self.received = signum
        if not self._holding:
            raise KeyboardInterrupt

    def hold(self) -> None:
        self._holding = True

    def release(self) -> None:
        """Stop holding, and act on a signal that came meanwhile."""
        self._holding = False
        if self.received:
            raise KeyboardInterrupt


def track_stream(
    tracker: SiameseTracker,
    source: FrameSource,
    box=None,
    results: Path | None = None,
    save: Path | None = None,
    show: bool | None = None,
    select=select_target,
) -> TrackSummary:
    """Run ``tracker`` from ``box`` in the first frame to the end of ``source``, or to Ctrl-C, SIGTERM or ``q``.

    Without ``box`` the viewer selects the target in the first frame, which needs a window; ``r`` selects it
    again at any time.
    """
    outputs = _Outputs(results, save, show, source.fps)
    if box is None and not outputs.display:
        outputs.close(keep=False)
        raise InputError(
            "give the target with --init x,y,w,h: selecting it needs a window, that is a display and a GUI build "
            "of OpenCV (pip install opencv-python)"
        )
    reader = FrameReader(source.frames(), capacity=1 if source.live else 4, drop_oldest=source.live)
    frames = lost = 0
    update_seconds = 0.0
    latencies: list[float] = []
    interrupted = False
    stop_signal = 0
    keep = True
    with _StopSignals() as stops:
        try:
            first = next(reader, None)
            if first is None:
                raise SourceError(f"{source.name} has no frames")
            if box is None:
                box = select(first.image)
                if box is None:
                    raise InputError("no target was selected: drag a box around it, then press Enter or Space")
            box = tracker.init(first.image, box)
            stops.hold()
            frames = 1
            action = outputs.emit(first.image, TrackResult(box, 1.0, False), 0.0)
            stops.release()
            for frame in reader if action != STOP else ():
                start = time.perf_counter()
                result = tracker.update(frame.image)
                done = time.perf_counter()
                stops.hold()
                update_seconds += done - start
                latencies.append(done - frame.timestamp)
                frames += 1
                lost += result.lost
                action = outputs.emit(frame.image, result, (frames - 1) / update_seconds)
                stops.release()
                if action == RESELECT and (box := select(frame.image)) is not None:
                    tracker.init(frame.image, box)
                elif action == STOP:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
            stop_signal = int(stops.received or signal.SIGINT)
        except OutputError:
            keep = False  # a file that could not be written is removed, and its sibling with it
            raise
        finally:
            stops.hold()
            reader.close()
            outputs.close(keep=keep and frames > 0)
    return _summary(source, reader, frames, lost, update_seconds, latencies, interrupted, stop_signal)


def _summary(source: FrameSource, reader: FrameReader, frames: int, lost: int, update_seconds: float, latencies: list[float], interrupted: bool, stop_signal: int) -> TrackSummary:
    """The summary of a finished stream from its counts: the update rate, and latencies in milliseconds."""
    fps = (frames - 1) / update_seconds if update_seconds > 0 else 0.0
    p50, worst = (1000 * float(np.median(latencies)), 1000 * max(latencies)) if latencies else (0.0, 0.0)
    return TrackSummary(
        frames=frames,
        lost=lost,
        fps=fps,
        interrupted=interrupted,
        dropped=reader.dropped,
        reconnects=source.reconnects,
        latency_p50_ms=p50,
        latency_max_ms=worst,
        stop_signal=stop_signal,
    )


def _fourcc(path: Path) -> str:
    fourcc = FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise OutputError(f"cannot record to {path}: use a .mp4 or .avi file")
    return fourcc


def _open_writer(staged: _StagedFile, fourcc: str, fps: float, frame: np.ndarray) -> cv2.VideoWriter:
    height, width = frame.shape[:2]
    writer = cv2.VideoWriter(str(staged.path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise OutputError(f"cannot record to {staged.final}: OpenCV could not open a {fourcc} writer there")
    return writer
