"""The VOT supervised (baseline) protocol and its scores, as vot-toolkit 0.9.0 runs and computes them.

The run (``vot/experiment/multirun.py``, ``SupervisedExperiment``): initialise on frame 0's ground truth and track;
a frame whose overlap with the ground truth is at most ``failure_overlap`` (0) is a failure; the tracker is
re-initialised ``skip_initialize`` (5) frames later, on that frame's ground truth (past any frame that carries one
of the experiment's skip tags). Overlaps are vot-toolkit's (``regions``): polygons stay polygons, clipped to the image.

The scores (``vot/analysis/supervised.py``, the VOT2018 stack):

- accuracy of a sequence: the mean overlap over its tracked frames, leaving out each initialisation frame and the
  ``burnin - 1`` (9) frames after it; the summary's is the mean over sequences weighted by their frame count
  (``supervised_average_ar``).
- failures: counted per sequence; the summary gives their frame-weighted mean (vot-toolkit's robustness measure)
  and their total (``cumulative_failures``), and ``robustness = exp(-sensitivity * failures / mean length)`` with
  sensitivity 30 (the AR plot's robustness).
- EAO: every initialisation starts a segment of overlaps that runs to the next failure (the failure frame left
  out) or to the end; a failed segment counts as overlap 0 after its failure. The curve at length ``n`` is the
  mean over segments of each one's average overlap over frames 1..n (the initialisation frame left out); the score
  is the curve's mean over lengths ``low..high`` (100..356).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence as Seq
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .datasets import FRAME_DIRS, GROUNDTRUTH_NAMES, Sequence
from .errors import InputError, SourceError
from .records import FieldsJson
from .regions import Region, read_regions, region_box, region_overlap

#: vot-toolkit's VOT2018 baseline settings.
SKIP_INITIALIZE = 5
FAILURE_OVERLAP = 0.0
BURNIN = 10
SENSITIVITY = 30.0
EAO_LOW, EAO_HIGH = 100, 356


class FrameState(IntEnum):
    """What the supervised run did on a frame (vot-toolkit's trajectory codes, with TRACKED for a region)."""

    SKIPPED = 0
    INITIALISED = 1
    FAILED = 2
    TRACKED = 3


class InitUpdateTracker(Protocol):
    """Any tracker the run can drive: ``SiameseTracker``, or a scripted stand-in."""

    def init(self, frame: np.ndarray, box_xywh: np.ndarray) -> Any: ...

    def update(self, frame: np.ndarray) -> Any:
        """The frame's result; its ``box`` attribute is the x,y,w,h box."""


# eq=False: comparing arrays field by field has no single truth value.
@dataclass(frozen=True, eq=False)
class SupervisedRun:
    """One sequence run under supervision."""

    sequence: str
    #: (N,) ``FrameState`` per frame
    states: np.ndarray
    #: (N, 4) the tracker's x,y,w,h box on tracked and failed frames, NaN elsewhere
    boxes: np.ndarray
    #: (N,) vot-toolkit's overlap of each frame's trajectory region with the ground truth; initialisation, failed and
    #: skipped frames have no region there, so theirs is the empty region's (0 unless the ground truth is degenerate)
    overlaps: np.ndarray
    #: wall time of the update calls
    update_seconds: float

    @property
    def initialisations(self) -> np.ndarray:
        return np.flatnonzero(self.states == FrameState.INITIALISED)

    @property
    def failures(self) -> np.ndarray:
        return np.flatnonzero(self.states == FrameState.FAILED)

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "initialisations": self.initialisations.tolist(),
            "failures": self.failures.tolist(),
            "states": self.states.tolist(),
            "boxes": [None if np.isnan(box).any() else box.tolist() for box in self.boxes],
            "overlaps": self.overlaps.tolist(),
            "update_seconds": self.update_seconds,
        }


def run_supervised(
    tracker: InitUpdateTracker,
    frames: Iterable[np.ndarray],
    regions: Seq[Region],
    name: str = "",
    *,
    skip_initialize: int = SKIP_INITIALIZE,
    failure_overlap: float = FAILURE_OVERLAP,
    skip_tagged: np.ndarray | None = None,
    on_frame: Callable[[], None] | None = None,
) -> SupervisedRun:
    """Run ``tracker`` over ``frames`` against the ground-truth ``regions`` (one per frame) under VOT supervision.

    A tracker is given a polygon's min/max box. A re-initialisation due on a frame without ground truth (target
    absent, which VOT's short-term datasets never have) waits for the next frame with one. ``skip_tagged`` flags the frames a re-initialisation passes over
    (those carrying one of the experiment's ``skip_tags``). Frames are read in order, skipped ones included, so
    ``frames`` may be a one-pass iterator such as ``Sequence.frames()``.
    """
    if skip_initialize < 1:
        raise InputError(f"skip_initialize must be at least 1, got {skip_initialize}")
    count = len(regions)
    states = np.full(count, FrameState.SKIPPED, dtype=np.uint8)
    boxes = np.full((count, 4), np.nan)
    overlaps = np.zeros(count)
    update_seconds = 0.0
    tracking, next_init, index = False, 0, -1
    for index, frame in enumerate(frames):
        if index >= count:
            raise InputError(f"sequence {name}: more frames than its {count} ground-truth regions")
        bounds = (frame.shape[1], frame.shape[0])
        if tracking:
            start = time.perf_counter()
            box = np.asarray(tracker.update(frame).box, dtype=np.float64)
            update_seconds += time.perf_counter() - start
            boxes[index] = box
            overlap = region_overlap(box, regions[index], bounds)
            if overlap > failure_overlap:
                states[index] = FrameState.TRACKED
            else:
                states[index], tracking = FrameState.FAILED, False
                next_init = _reinit_frame(index + skip_initialize, skip_tagged)
        elif index == next_init and regions[index] is None:
            if index == 0:
                raise InputError(f"sequence {name}: frame 0 has no ground truth to initialise the tracker on")
            next_init += 1
        elif index == next_init:
            tracker.init(frame, region_box(regions[index]))
            states[index], tracking = FrameState.INITIALISED, True
        tracked = states[index] == FrameState.TRACKED
        overlaps[index] = overlap if tracked else region_overlap(None, regions[index], bounds)
        if on_frame is not None:
            on_frame()
    if index + 1 != count:
        raise InputError(f"sequence {name}: {index + 1} frames but {count} ground-truth regions")
    return SupervisedRun(name, states, boxes, overlaps, update_seconds)


def _reinit_frame(frame: int, skip_tagged: np.ndarray | None) -> int:
    while skip_tagged is not None and frame < len(skip_tagged) and skip_tagged[frame]:
        frame += 1
    return frame


def run_sequence(
    tracker: InitUpdateTracker, sequence: Sequence, groundtruth: Path | None = None, **options: Any
) -> SupervisedRun:
    """``run_supervised`` over a dataset sequence and its raw ground-truth regions (``sequence_regions``)."""
    return run_supervised(tracker, sequence.frames(), sequence_regions(sequence, groundtruth), sequence.name, **options)


def sequence_regions(sequence: Sequence, groundtruth: Path | None = None) -> list[Region]:
    """A sequence's ground truth as VOT regions, polygons kept: the raw rows of ``groundtruth`` if given, else of the
    ground-truth file beside a frame folder (as ``load_dataset`` finds it); otherwise (a video, a layout that keeps its
    annotations elsewhere) the sequence's x,y,w,h boxes as rectangles. Frames the sequence flags absent (a NaN row,
    LaSOT's ``0,0,0,0`` with its occlusion flags, GOT-10k's absence label) have no region (None)."""
    folder = _sequence_folder(sequence)
    found = [folder / name for name in GROUNDTRUTH_NAMES if folder is not None and (folder / name).is_file()]
    path = Path(groundtruth) if groundtruth is not None else next(iter(found), None)
    if path is None:
        regions = list(sequence.groundtruth)
    else:
        regions = read_regions(path)
        if len(regions) != len(sequence):
            raise SourceError(f"sequence {sequence.name}: {path} has {len(regions)} rows for {len(sequence)} frames")
    return [None if absent else region for region, absent in zip(regions, sequence.absent)]


def _sequence_folder(sequence: Sequence) -> Path | None:
    if not sequence.frame_paths:
        return None
    folder = sequence.frame_paths[0].parent
    return folder.parent if folder.name in FRAME_DIRS else folder


def read_skip_tagged(folder: Path, tags: Iterable[str], frames: int) -> np.ndarray:
    """The frames of a VOT sequence folder that carry any of ``tags`` (files ``<tag>.tag`` or ``<tag>.label``,
    one 0/1 per frame; a missing file or row means untagged), as vot-toolkit reads them."""
    tagged = np.zeros(frames, dtype=bool)
    for tag in tags:
        for path in (Path(folder) / f"{tag}.tag", Path(folder) / f"{tag}.label"):
            if path.is_file():
                flags = [line.strip() == "1" for line in path.read_text(encoding="utf-8").splitlines()][:frames]
                tagged[: len(flags)] |= flags
    return tagged


def accuracy_frames(states: np.ndarray, burnin: int = BURNIN) -> np.ndarray:
    """The frames accuracy counts: tracked, and not among the ``burnin`` frames that start at an initialisation."""
    counted = states == FrameState.TRACKED
    for start in np.flatnonzero(states == FrameState.INITIALISED):
        counted[start : start + burnin] = False
    return counted


def sequence_accuracy(run: SupervisedRun, burnin: int = BURNIN) -> float:
    """The mean overlap over ``accuracy_frames``; 0 when there is none, as vot-toolkit gives."""
    counted = accuracy_frames(run.states, burnin)
    return float(np.mean(run.overlaps[counted])) if counted.any() else 0.0


def eao_segments(run: SupervisedRun) -> list[tuple[np.ndarray, bool]]:
    """Each initialisation's overlaps up to the next failure (left out) or the sequence's end, and whether it
    ended in a failure."""
    starts, failures = run.initialisations, run.failures
    segments = [(run.overlaps[start:end], True) for start, end in zip(starts, failures)]
    if len(starts) > len(failures):
        segments.append((run.overlaps[starts[-1] :], False))
    return segments


def eao_curve(runs: Iterable[SupervisedRun]) -> np.ndarray:
    """The expected average overlap at each sequence length 0..L-1, L the longest segment. vot-toolkit computes it
    in float32; this is float64, so the two agree to about 1e-7."""
    segments = [segment for run in runs for segment in eao_segments(run)]
    length = max(len(overlaps) for overlaps, _ in segments)
    padded = np.zeros((len(segments), length))
    counted = np.zeros((len(segments), length), dtype=bool)
    for row, (overlaps, failed) in enumerate(segments):
        padded[row, : len(overlaps)] = overlaps
        counted[row, : length if failed else len(overlaps)] = True
    averages = padded.copy()
    averages[:, 1:] = np.cumsum(padded[:, 1:], axis=1) / np.arange(1, length)
    return (averages * counted).sum(axis=0) / counted.sum(axis=0)


def eao_score(curve: np.ndarray, low: int = EAO_LOW, high: int = EAO_HIGH) -> float:
    """The curve's mean over lengths ``low..high`` (those the curve reaches); NaN when it is shorter than ``low``."""
    window = curve[low : high + 1]
    return float(np.mean(window)) if len(window) else math.nan


@dataclass(frozen=True)
class VotSequenceScores(FieldsJson):
    """One sequence's VOT baseline scores (vot-toolkit's ``AccuracyRobustness`` of one run)."""

    sequence: str
    frames: int
    accuracy: float
    failures: int
    #: ``exp(-sensitivity * failures / frames)``
    robustness: float


@dataclass(frozen=True)
class VotSummary:
    """The VOT baseline scores of a set of sequences, per sequence and together."""

    sequences: tuple[VotSequenceScores, ...]
    #: frame-weighted mean of the sequences' accuracy
    accuracy: float
    #: frame-weighted mean of the sequences' failure counts (vot-toolkit's robustness measure)
    failures: float
    failures_total: int
    #: ``exp(-sensitivity * failures / mean sequence length)``
    robustness: float
    eao: float
    eao_curve: tuple[float, ...]
    burnin: int
    sensitivity: float
    eao_low: int
    eao_high: int

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "failures": self.failures,
            "failures_total": self.failures_total,
            "robustness": self.robustness,
            "eao": self.eao,
            "settings": {
                "burnin": self.burnin,
                "sensitivity": self.sensitivity,
                "eao_low": self.eao_low,
                "eao_high": self.eao_high,
            },
            "sequences": [s.to_json() for s in self.sequences],
            "eao_curve": list(self.eao_curve),
        }


def summarise(
    runs: Seq[SupervisedRun],
    *,
    burnin: int = BURNIN,
    sensitivity: float = SENSITIVITY,
    low: int = EAO_LOW,
    high: int = EAO_HIGH,
) -> VotSummary:
    """Accuracy, failures, robustness and EAO of supervised runs, one per sequence."""
    if not runs:
        raise InputError("no sequence to score")
    scores = tuple(
        VotSequenceScores(
            sequence=run.sequence,
            frames=len(run.states),
            accuracy=sequence_accuracy(run, burnin),
            failures=len(run.failures),
            robustness=math.exp(-(len(run.failures) / len(run.states)) * sensitivity),
        )
        for run in runs
    )
    frames = sum(s.frames for s in scores)
    failures = sum(s.failures * s.frames for s in scores) / frames
    curve = eao_curve(runs)
    return VotSummary(
        sequences=scores,
        accuracy=sum(s.accuracy * s.frames for s in scores) / frames,
        failures=failures,
        failures_total=sum(s.failures for s in scores),
        robustness=math.exp(-(failures / (frames / len(scores))) * sensitivity),
        eao=eao_score(curve, low, high),
        eao_curve=tuple(float(v) for v in curve),
        burnin=burnin,
        sensitivity=sensitivity,
        eao_low=low,
        eao_high=high,
    )
