"""Latency-aware evaluation (LAE): the tracker against a camera that does not wait for it.

The protocol is LAE from Li et al., "Predictive Visual Tracking: A New Benchmark and Baseline Approach" (2021),
with the permitted latency of its extension e-LAE in PVT++ (Li et al., ICCV 2023). The rules below follow their
reference code (vision4robotics/LAE-PVT-master ``libraries/pysot-master/tools/test_rt.py`` and ``eval/streaming_eval_fast.py``,
Jaraxxus-Me/PVT_pp ``onboard/test_rt.py``, Jaraxxus-Me/e-LAE):

- Frame ``i`` arrives at ``t_i = i / fps``; time 0 is frame 0's arrival.
- The tracker initialises on frame 0. The ground-truth box it starts from is the output from time 0 (LAE stamps
  the init result 0), but init takes its measured time: the tracker is busy until it returns, as in the
  reference, whose clock starts before init.
- Whenever the tracker is free, at time ``t``, it takes the newest frame that has arrived (the largest ``j`` with
  ``t_j <= t``). If it has already processed that frame it waits for the next one: ``t = t_{j+1}``. The update
  takes its measured time ``d``; its result is done at ``t + d``, when the tracker is free again. A frame that is
  never the newest when the tracker is free is skipped. The last frame is always processed, and ends the run.
- Frame ``i`` is shown the result of the latest update done at or before ``(i + permitted_latency) / fps``, or the
  initial box when no update is done by then (a frame is never shown the result of a later frame).
  ``permitted_latency`` is e-LAE's sigma, in frame periods: 0 is LAE's strict rule, where even a tracker faster
  than the camera shows each frame the previous frame's result; 1 lets a result count for its frame if it is done
  by the next frame's arrival, so a tracker faster than the camera scores as offline OPE.

Only the ``update`` and ``init`` calls are timed, with the injected ``clock``. Frames are decoded when the tracker
takes them, outside the timed calls (the camera delivers decoded frames, as PVT++ preloads them); the frames of
an image sequence that are skipped are never decoded. Unlike the reference, whose wall clock also runs through
its Python loop, time passes only in the timed calls and the waits, so a run is reproducible from its durations.

Scores are those of ``evaluate.track_sequence``, on the shown boxes: frames whose target is absent are left out of
the curves, and the lost flag shown with each box (False with the initial one) is scored against the absence.
A realtime result's ``updates`` counts the frames it updated on, so ``summarise``'s mean fps stays the tracker's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from edgetrack.defaults import PERMITTED_LATENCY

from .datasets import Sequence
from .errors import InputError
from .evaluate import SequenceResult, score_frames
from .sources import read_images
from .tracker import SiameseTracker, TrackResult


@dataclass(frozen=True)
class Timeline:
    """One run against the camera: the frames the tracker updated on, when each result was done, what it said."""

    camera_fps: float
    frames: int
    #: the measured time of init, during which the tracker could take no frame
    init_seconds: float
    #: (K,) the frame indices given to ``update``, ascending
    updated: np.ndarray
    #: (K,) seconds after frame 0 arrived when each update returned
    done: np.ndarray
    #: (K,) the measured time of each update call
    update_seconds: np.ndarray
    #: (K, 4) x, y, w, h, and (K,) the lost flag, of each update
    boxes: np.ndarray
    lost: np.ndarray


# eq=False, as for SequenceResult: comparing box arrays field by field has no single truth value.
@dataclass(frozen=True, eq=False)
class RealtimeSequenceResult(SequenceResult):
    """A ``SequenceResult`` (``boxes`` are the boxes shown on each frame) plus what the camera's pace did.
    ``fps`` is the tracker's own speed: updated frames over the time of their update calls."""

    camera_fps: float
    permitted_latency: float
    #: the frames the tracker updated on, ascending
    updated_frames: np.ndarray
    #: (N,) for each frame, the frame whose result is shown on it (0: the initial box)
    shown_from: np.ndarray

    @property
    def updates(self) -> int:
        return len(self.updated_frames)

    @property
    def skipped_frames(self) -> np.ndarray:
        """The frames after the first that the tracker never saw."""
        return np.setdiff1d(np.arange(1, self.frames), self.updated_frames)

    @property
    def mean_frames_behind(self) -> float:
        """How many frames older than the frame it is shown on the shown result is, on average (LAE's mismatch)."""
        return float(np.mean(np.arange(self.frames) - self.shown_from))


def newest_frame(t: float, fps: float, frames: int) -> int:
    """The newest of ``frames`` frames that has arrived at time ``t`` (frame ``j`` arrives at ``j / fps``)."""
    index = min(max(int(t * fps), 0), frames - 1)
    # int(t * fps) can land one off where t is an arrival time; the arrival times themselves decide.
    while index + 1 < frames and (index + 1) / fps <= t:
        index += 1
    while index > 0 and index / fps > t:
        index -= 1
    return index


class _FrameReader:
    """Decodes the frame asked for, going forward only: an image sequence reads just that file, a video decodes
    its way there."""

    def __init__(self, sequence: Sequence):
        self._paths = sequence.frame_paths
        self._video: Iterator[np.ndarray] | None = None if self._paths else sequence.frames()
        self._next = 0

    def read(self, index: int) -> np.ndarray:
        if self._video is None:
            return next(read_images((self._paths[index],)))
        frame = next(self._video)
        for _ in range(index - self._next):
            frame = next(self._video)
        self._next = index + 1
        return frame


def run_realtime(
    tracker: SiameseTracker,
    sequence: Sequence,
    camera_fps: float,
    clock: Callable[[], float] = time.perf_counter,
    on_frame: Callable[[], None] | None = None,
) -> Timeline:
    """Run ``tracker`` over ``sequence`` against a camera at ``camera_fps`` (see the module's protocol).
    ``on_frame`` is called once per frame after the first, as the frames go by."""
    if not camera_fps > 0:
        raise InputError(f"the camera's frame rate must be positive, got {camera_fps}")
    frames = len(sequence)
    reader = _FrameReader(sequence)
    first = reader.read(0)
    start = clock()
    tracker.init(first, sequence.groundtruth[0])
    init_seconds = clock() - start
    now, last = init_seconds, 0
    updated, done, seconds, results = [], [], [], []
    while last < frames - 1:
        index = newest_frame(now, camera_fps, frames)
        if index == last:
            index = last + 1
            now = index / camera_fps
        frame = reader.read(index)
        start = clock()
        result: TrackResult = tracker.update(frame)
        took = clock() - start
        now += took
        updated.append(index)
        done.append(now)
        seconds.append(took)
        results.append(result)
        if on_frame is not None:
            for _ in range(index - last):
                on_frame()
        last = index
    return Timeline(
        camera_fps=float(camera_fps),
        frames=frames,
        init_seconds=init_seconds,
        updated=np.array(updated, dtype=np.int64),
        done=np.array(done, dtype=np.float64),
        update_seconds=np.array(seconds, dtype=np.float64),
        boxes=np.array([r.box for r in results], dtype=np.float64).reshape(-1, 4),
        lost=np.array([r.lost for r in results], dtype=bool),
    )


def check_permitted_latency(permitted_latency: float) -> None:
    if not 0 <= permitted_latency <= 1:
        raise InputError(f"the permitted latency is in frame periods, from 0 to 1; got {permitted_latency}")


def shown_updates(timeline: Timeline, permitted_latency: float = PERMITTED_LATENCY) -> np.ndarray:
    """(N,) for each frame, the position in ``timeline.updated`` of the result shown on it; -1: the initial box."""
    check_permitted_latency(permitted_latency)
    frames = np.arange(timeline.frames)
    deadlines = (frames + permitted_latency) / timeline.camera_fps
    done_by = np.searchsorted(timeline.done, deadlines, side="right") - 1
    # A result done with no time to spare could otherwise land on a frame older than its own.
    not_later = np.searchsorted(timeline.updated, frames, side="right") - 1
    shown = np.minimum(done_by, not_later)
    shown[0] = -1
    return shown


def score_timeline(sequence: Sequence, timeline: Timeline, permitted_latency: float = PERMITTED_LATENCY) -> RealtimeSequenceResult:
    """The scores of the boxes ``timeline`` shows on ``sequence``'s frames (see the module's protocol)."""
    pick = shown_updates(timeline, permitted_latency) + 1
    boxes = np.vstack([sequence.groundtruth[:1], timeline.boxes])[pick]
    lost = np.concatenate([[False], timeline.lost])[pick]
    scores, lost_record = score_frames(sequence, boxes, lost)
    update_seconds = float(timeline.update_seconds.sum())
    return RealtimeSequenceResult(
        name=sequence.name,
        boxes=boxes,
        scores=scores,
        lost=lost_record,
        fps=len(timeline.updated) / update_seconds if update_seconds > 0 else float("nan"),
        frames=timeline.frames,
        update_seconds=update_seconds,
        camera_fps=timeline.camera_fps,
        permitted_latency=float(permitted_latency),
        updated_frames=timeline.updated,
        shown_from=np.concatenate([[0], timeline.updated])[pick],
    )


def track_sequence_realtime(
    tracker: SiameseTracker,
    sequence: Sequence,
    fps: float,
    permitted_latency: float = PERMITTED_LATENCY,
    clock: Callable[[], float] = time.perf_counter,
    on_frame: Callable[[], None] | None = None,
) -> RealtimeSequenceResult:
    """``evaluate.track_sequence`` against a camera at ``fps``: run (``run_realtime``) and score (``score_timeline``)."""
    check_permitted_latency(permitted_latency)
    if not sequence.scored:
        raise InputError(f"sequence {sequence.name} has ground truth on its first frame only (a test split): evaluate it offline, without --realtime")
    return score_timeline(sequence, run_realtime(tracker, sequence, fps, clock, on_frame), permitted_latency)
