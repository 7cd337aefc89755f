"""One-pass evaluation (OPE) metrics, following the got10k toolkit's OTB experiment to the digit.

Boxes are (N, 4) arrays of x, y, w, h. ``ope_scores`` itself keeps invalid ground truth (NaN rows): like got10k's
ExperimentOTB, such a frame gives a NaN overlap and a NaN error, which fail every '>' and '<=' comparison, so the
frame stays in the denominator and counts as a failure.

The evaluator (``evaluate.track_sequence``) follows LaSOT's and GOT-10k's convention instead: a frame whose target
is absent (``absent_frames``: a NaN or empty ground-truth box) is left out of the success and precision curves,
and is where the lost-target signal is scored (``LostScores``): raising ``lost`` there is right, raising it on a
frame whose target is present is a false alarm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: Overlap thresholds of the success curve (x axis of the success plot).
SUCCESS_THRESHOLDS = np.linspace(0, 1, 21)
#: Centre-error thresholds of the precision curve, in pixels.
PRECISION_THRESHOLDS = np.arange(0, 51)
#: Thresholds of the normalised precision curve, in units of the ground-truth size.
NORM_PRECISION_THRESHOLDS = np.arange(0, 51) / 100
# Index of 20 px in PRECISION_THRESHOLDS and of 0.20 in NORM_PRECISION_THRESHOLDS.
_AT_20 = 20


@dataclass(frozen=True)
class OpeScores:
    """Success AUC, precision at 20 px and normalised precision at 0.20 of one sequence."""

    auc: float
    precision: float
    norm_precision: float


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 4:
        raise InputError(
            f"predicted and ground-truth boxes must both be N x 4 (x,y,w,h) with one row per frame, "
            f"got shapes {a.shape} and {b.shape}"
        )
    return a, b


def _centers(boxes: np.ndarray) -> np.ndarray:
    # got10k / OTB treat x, y, w, h as 1-based pixel boxes, hence the -1.
    return boxes[:, :2] + (boxes[:, 2:] - 1) / 2


def rect_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row intersection over union of two (N, 4) box arrays, without the +1 pixel convention."""
    a, b = _pair(a, b)
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    # got10k's eps makes two zero-area boxes 0, not NaN. Its clip matters too: with fractional coordinates,
    # rounding can make an intersection larger than the union, and an IoU above 1 would pass the 1.0 threshold.
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def center_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Euclidean distance in pixels between the box centres."""
    a, b = _pair(a, b)
    return np.linalg.norm(_centers(a) - _centers(b), axis=1)


def normalized_center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-row centre distance with each axis divided by the ground-truth width or height."""
    pred, gt = _pair(pred, gt)
    # A zero-size ground truth gives inf or NaN, which counts as a failure like any invalid frame.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.linalg.norm((_centers(pred) - _centers(gt)) / gt[:, 2:], axis=1)


def success_curve(ious: np.ndarray) -> np.ndarray:
    """Fraction of frames whose overlap is strictly above each of SUCCESS_THRESHOLDS."""
    ious = np.asarray(ious, dtype=np.float64)
    return np.mean(ious[:, None] > SUCCESS_THRESHOLDS[None, :], axis=0)


def precision_curve(errors: np.ndarray, thresholds: np.ndarray = PRECISION_THRESHOLDS) -> np.ndarray:
    """Fraction of frames whose error is at most each threshold (pixels, or NORM_PRECISION_THRESHOLDS)."""
    errors = np.asarray(errors, dtype=np.float64)
    return np.mean(errors[:, None] <= np.asarray(thresholds)[None, :], axis=0)


@dataclass(frozen=True)
class LostScores:
    """How often the tracker raised ``lost`` on the updated frames whose target is absent and on those where it is
    present. ``recall`` is the share of absent frames flagged, ``false_alarms`` the share of present ones."""

    absent_frames: int
    present_frames: int
    lost_when_absent: int
    lost_when_present: int

    @property
    def recall(self) -> float:
        return self.lost_when_absent / self.absent_frames if self.absent_frames else float("nan")

    @property
    def false_alarms(self) -> float:
        return self.lost_when_present / self.present_frames if self.present_frames else float("nan")

    def __add__(self, other: LostScores) -> LostScores:
        return LostScores(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def absent_frames(groundtruth: np.ndarray) -> np.ndarray:
    """Per-row flags of ground truth that holds no target: a NaN or infinite value, or a zero or negative size."""
    groundtruth = np.asarray(groundtruth, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~(np.isfinite(groundtruth).all(axis=1) & (groundtruth[:, 2] > 0) & (groundtruth[:, 3] > 0))


def lost_scores(lost: np.ndarray, absent: np.ndarray) -> LostScores:
    """Score the per-frame ``lost`` flags of the updated frames against the per-frame ``absent`` flags."""
    lost, absent = np.asarray(lost, dtype=bool), np.asarray(absent, dtype=bool)
    return LostScores(
        absent_frames=int(absent.sum()),
        present_frames=int((~absent).sum()),
        lost_when_absent=int((lost & absent).sum()),
        lost_when_present=int((lost & ~absent).sum()),
    )


def ope_scores(boxes: np.ndarray, groundtruth: np.ndarray) -> OpeScores:
    """Scores of one sequence's predicted boxes against its ground truth, every frame included."""
    boxes, groundtruth = _pair(boxes, groundtruth)
    if len(boxes) == 0:
        raise InputError("cannot score an empty sequence: give at least one frame of boxes and ground truth")
    # got10k's report overwrites the first prediction with the initial box the tracker was given.
    boxes = boxes.copy()
    boxes[0] = groundtruth[0]
    succ = success_curve(rect_iou(boxes, groundtruth))
    prec = precision_curve(center_error(boxes, groundtruth))
    norm = precision_curve(normalized_center_error(boxes, groundtruth), NORM_PRECISION_THRESHOLDS)
    return OpeScores(auc=float(np.mean(succ)), precision=float(prec[_AT_20]), norm_precision=float(norm[_AT_20]))


@dataclass(frozen=True)
class Interval:
    """The mean of paired differences and its percentile bootstrap interval."""

    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        """As the reports write it: ``-0.083 [-0.130, -0.043]``."""
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def paired_bootstrap(differences, resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> Interval:
    """The mean of per-sequence differences between two trackers (say their AUCs on the same sequences) and its
    percentile bootstrap interval: the sequences are resampled with replacement ``resamples`` times."""
    diffs = np.asarray(differences, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), (resamples, len(diffs)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return Interval(float(diffs.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)))
