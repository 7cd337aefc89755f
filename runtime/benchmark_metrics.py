"""The official scores of the tracking benchmarks, each computed the way the code that publishes them computes it.

- OTB: the got10k toolkit's ``ExperimentOTB.report`` (got10k/experiments/otb.py): every frame counts, the first
  prediction is replaced by the initial box, a frame with invalid (NaN) ground truth is a failure; per-sequence
  curves are averaged over sequences. The normalised precision, which got10k does not report, uses the same rules.
- UAV123: got10k's ``ExperimentUAV123`` (got10k/experiments/uav123.py), which is OTB's report except that frames
  whose ground truth holds a NaN leave the denominator too (``_calc_metrics``).
- TrackingNet: OTB's rules (its evaluation server scores the same success, precision and normalised precision on
  every frame); the test split's ground truth is withheld, so only the server scores it.
- LaSOT: the LaSOT authors' toolkit (github.com/HengLan/LaSOT_Evaluation_Toolkit, ``utils/eval_tracker.m`` and
  ``utils/calc_seq_err_robust.m``, ranked by ``utils/plot_draw_save.m``). A frame whose target is absent (full
  occlusion or out of view) scores nothing but stays in the denominator, so it counts as a failure; pysot's
  ``OPEBenchmark.eval_success`` (``n_frame`` taken before the absent frames are dropped) and pytracking's
  ``calc_seq_err_robust`` agree. The toolkit also carries a prediction with NaN or a non-positive size over from
  the previous frame, gives a frame whose ground truth has a non-positive x, y, w or h an overlap of -1 (a
  failure) but a centre error of -1 (a success), and averages only the sequences whose curve is not all zero.
- GOT-10k (val): got10k's ``ExperimentGOT10k.report`` and ``_evaluate`` (got10k/experiments/got10k.py): the first
  frame and the frames whose ``cover.label`` is 0 are left out, both boxes are first clipped to the image
  (``rect_iou(..., bound=resolution)``), and AO and SR are means over every scored frame of every sequence pooled,
  not over sequences; the speed is the mean of ``1 / t`` over the positive per-frame times. SR0.75 is SR0.50 with
  0.75 in its place (got10k reports only SR0.50).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .datasets import Sequence
from .errors import InputError
from .metrics import (
    NORM_PRECISION_THRESHOLDS,
    PRECISION_THRESHOLDS,
    SUCCESS_THRESHOLDS,
    OpeScores,
    center_error,
    normalized_center_error,
    rect_iou,
)
from .records import FieldsJson

if TYPE_CHECKING:
    from .evaluate import SequenceResult

#: The benchmarks whose official scores and result files edgetrack writes.
BENCHMARKS = ("otb", "uav123", "got10k", "lasot", "trackingnet")
#: GOT-10k's success-curve thresholds (got10k's ``nbins_iou = 101``).
GOT10K_THRESHOLDS = np.linspace(0, 1, 101)
# Index of 20 px in PRECISION_THRESHOLDS and of 0.20 in NORM_PRECISION_THRESHOLDS.
_AT_20 = 20


@dataclass(frozen=True)
class OpeCurves:
    """One sequence's success, precision and normalised precision curves (over SUCCESS_THRESHOLDS,
    PRECISION_THRESHOLDS and NORM_PRECISION_THRESHOLDS)."""

    success: np.ndarray
    precision: np.ndarray
    norm_precision: np.ndarray

    def scores(self) -> OpeScores:
        return OpeScores(
            auc=float(np.mean(self.success)),
            precision=float(self.precision[_AT_20]),
            norm_precision=float(self.norm_precision[_AT_20]),
        )


@dataclass(frozen=True)
class OpeBenchmarkScores:
    """A benchmark's success AUC, precision at 20 px and normalised precision at 0.20, from the curves averaged
    over sequences, with those curves and each sequence's scores."""

    benchmark: str
    auc: float
    precision: float
    norm_precision: float
    success_curve: tuple[float, ...]
    precision_curve: tuple[float, ...]
    norm_precision_curve: tuple[float, ...]
    sequences: Mapping[str, OpeScores]

    def to_json(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        return raw | {
            **{key: list(raw[key]) for key in ("success_curve", "precision_curve", "norm_precision_curve")},
            "sequences": {name: dataclasses.asdict(s) for name, s in self.sequences.items()},
        }


@dataclass(frozen=True)
class Got10kSequenceScores(FieldsJson):
    """One sequence's GOT-10k scores (got10k's ``seq_wise``)."""

    ao: float
    sr50: float
    sr75: float
    #: None when the sequence has no positive per-frame time (got10k writes -1)
    speed_fps: float | None


@dataclass(frozen=True)
class Got10kScores:
    """GOT-10k's average overlap and success rates over every scored frame of every sequence pooled (got10k's
    ``overall``), its 101-point success curve, its speed and each sequence's scores."""

    ao: float
    sr50: float
    sr75: float
    #: None when no per-frame time is positive (got10k writes -1)
    speed_fps: float | None
    success_curve: tuple[float, ...]
    sequences: Mapping[str, Got10kSequenceScores]
    benchmark: str = "got10k"

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "ao": self.ao,
            "sr50": self.sr50,
            "sr75": self.sr75,
            "speed_fps": self.speed_fps,
            "success_curve": list(self.success_curve),
            "sequences": {name: s.to_json() for name, s in self.sequences.items()},
        }


def _boxes(boxes: np.ndarray, groundtruth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.array(boxes, dtype=np.float64)
    groundtruth = np.array(groundtruth, dtype=np.float64)
    if boxes.shape != groundtruth.shape or boxes.ndim != 2 or boxes.shape[1] != 4 or not len(boxes):
        raise InputError(
            f"predicted and ground-truth boxes must both be N x 4 (x,y,w,h), N >= 1, one row per frame; "
            f"got shapes {boxes.shape} and {groundtruth.shape}"
        )
    # Every benchmark's report replaces the first prediction with the initial box the tracker was given.
    boxes[0] = groundtruth[0]
    return boxes, groundtruth


def _curves(ious: np.ndarray, errors: np.ndarray, norm_errors: np.ndarray, frames: int) -> OpeCurves:
    """Curves counting the frames that pass each threshold out of ``frames`` (which may exceed the frames given)."""
    return OpeCurves(
        success=np.sum(ious[:, None] > SUCCESS_THRESHOLDS[None, :], axis=0) / frames,
        precision=np.sum(errors[:, None] <= PRECISION_THRESHOLDS[None, :], axis=0) / frames,
        norm_precision=np.sum(norm_errors[:, None] <= NORM_PRECISION_THRESHOLDS[None, :], axis=0) / frames,
    )


def _every_frame(boxes: np.ndarray, groundtruth: np.ndarray) -> OpeCurves:
    return _curves(
        rect_iou(boxes, groundtruth),
        center_error(boxes, groundtruth),
        normalized_center_error(boxes, groundtruth),
        len(boxes),
    )


def otb_curves(boxes: np.ndarray, groundtruth: np.ndarray) -> OpeCurves:
    """OTB's (and TrackingNet's) curves of one sequence: every frame counts; invalid ground truth is a failure."""
    return _every_frame(*_boxes(boxes, groundtruth))


def uav123_curves(boxes: np.ndarray, groundtruth: np.ndarray) -> OpeCurves:
    """UAV123's curves of one sequence: OTB's over the frames whose ground truth holds no NaN (the first
    prediction is replaced before they are picked)."""
    boxes, groundtruth = _boxes(boxes, groundtruth)
    valid = ~np.isnan(groundtruth).any(axis=1)
    return _every_frame(boxes[valid], groundtruth[valid])


def _carry_invalid_predictions(boxes: np.ndarray, groundtruth: np.ndarray) -> np.ndarray:
    """LaSOT's repair: from the second frame on, a prediction with a NaN or a non-positive size takes the previous
    frame's (already repaired) prediction, where the ground truth holds no NaN."""
    boxes = boxes.copy()
    with np.errstate(invalid="ignore"):
        bad = (np.isnan(boxes).any(axis=1) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)) & ~np.isnan(groundtruth).any(axis=1)
    for i in np.flatnonzero(bad):
        if i > 0:
            boxes[i] = boxes[i - 1]
    return boxes


def lasot_curves(boxes: np.ndarray, groundtruth: np.ndarray, absent: np.ndarray) -> OpeCurves:
    """LaSOT's curves of one sequence: the frames flagged ``absent`` score nothing but stay in the denominator."""
    boxes, groundtruth = _boxes(boxes, groundtruth)
    absent = np.asarray(absent, dtype=bool).reshape(-1)
    if len(absent) != len(boxes):
        raise InputError(f"{len(absent)} absence flags for {len(boxes)} frames: give one flag per frame")
    boxes = _carry_invalid_predictions(boxes, groundtruth)
    pred, gt = boxes[~absent], groundtruth[~absent]
    with np.errstate(invalid="ignore"):
        valid = (gt > 0).all(axis=1)
    ious = np.full(len(gt), -1.0)
    ious[valid] = rect_iou(pred[valid], gt[valid])
    errors = np.where(valid, center_error(pred, gt), -1.0)
    norm_errors = np.where(valid, normalized_center_error(pred, gt), -1.0)
    return _curves(ious, errors, norm_errors, len(boxes))


def _mean_curve(curves: list[np.ndarray], drop_all_zero: bool) -> np.ndarray:
    stacked = np.stack(curves)
    if drop_all_zero:
        # LaSOT's plot_draw_save averages only the sequences whose curve sums above eps.
        stacked = stacked[stacked.sum(axis=1) > np.finfo(float).eps]
    if not len(stacked):
        return np.full(len(curves[0]), np.nan)
    return stacked.mean(axis=0)


def ope_benchmark_scores(benchmark: str, curves: Mapping[str, OpeCurves]) -> OpeBenchmarkScores:
    """Average per-sequence curves over sequences into a benchmark's scores (LaSOT leaves out all-zero curves)."""
    if not curves:
        raise InputError(f"no sequences to score for {benchmark}: give at least one result")
    drop = benchmark == "lasot"
    success = _mean_curve([c.success for c in curves.values()], drop)
    precision = _mean_curve([c.precision for c in curves.values()], drop)
    norm_precision = _mean_curve([c.norm_precision for c in curves.values()], drop)
    return OpeBenchmarkScores(
        benchmark=benchmark,
        auc=float(np.mean(success)),
        precision=float(precision[_AT_20]),
        norm_precision=float(norm_precision[_AT_20]),
        success_curve=tuple(float(v) for v in success),
        precision_curve=tuple(float(v) for v in precision),
        norm_precision_curve=tuple(float(v) for v in norm_precision),
        sequences={name: c.scores() for name, c in curves.items()},
    )


def clip_to_image(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """got10k's ``rect_iou(bound=(width, height))`` clipping: x and y into the image, then w and h to the room
    left from the clipped x and y. A box left of the image keeps its width: got10k does not shorten it."""
    boxes = np.array(boxes, dtype=np.float64)
    boxes[:, 0] = np.clip(boxes[:, 0], 0, width)
    boxes[:, 1] = np.clip(boxes[:, 1], 0, height)
    boxes[:, 2] = np.clip(boxes[:, 2], 0, width - boxes[:, 0])
    boxes[:, 3] = np.clip(boxes[:, 3], 0, height - boxes[:, 1])
    return boxes


def got10k_ious(boxes: np.ndarray, groundtruth: np.ndarray, visible: np.ndarray, resolution: tuple[float, float]) -> np.ndarray:
    """The overlaps GOT-10k scores in one sequence: every frame after the first whose target is ``visible``
    (``cover.label`` above 0), both boxes clipped to the ``resolution`` (width, height) image first."""
    boxes, groundtruth = _boxes(boxes, groundtruth)
    visible = np.asarray(visible, dtype=bool).reshape(-1)
    if len(visible) != len(boxes):
        raise InputError(f"{len(visible)} visibility flags for {len(boxes)} frames: give one flag per frame")
    width, height = resolution
    ious = rect_iou(clip_to_image(boxes[1:], width, height), clip_to_image(groundtruth[1:], width, height))
    return ious[visible[1:]]


def _positive_times(times: np.ndarray) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    times = times[~np.isnan(times)]
    return times[times > 0]


def _speed(times: np.ndarray) -> float | None:
    return float(np.mean(1.0 / times)) if len(times) else None


def _mean(values: np.ndarray) -> float:
    # got10k's np.mean of no frames is NaN (with a warning); the same NaN here, without it.
    return float(np.mean(values)) if len(values) else float("nan")


def got10k_scores(ious: Mapping[str, np.ndarray], times: Mapping[str, np.ndarray]) -> Got10kScores:
    """GOT-10k's scores from each sequence's ``got10k_ious`` and per-frame seconds (NaN and non-positive times are
    left out; a sequence missing from ``times`` has no speed)."""
    if not ious:
        raise InputError("no sequences to score for got10k: give at least one result")
    kept = {name: _positive_times(times.get(name, ())) for name in ious}
    sequences = {
        name: Got10kSequenceScores(
            ao=_mean(seq),
            sr50=_mean(seq > 0.5),
            sr75=_mean(seq > 0.75),
            speed_fps=_speed(kept[name]),
        )
        for name, seq in ious.items()
    }
    pooled = np.concatenate([np.asarray(v, dtype=np.float64) for v in ious.values()])
    return Got10kScores(
        ao=_mean(pooled),
        sr50=_mean(pooled > 0.5),
        sr75=_mean(pooled > 0.75),
        speed_fps=_speed(np.concatenate(list(kept.values()))),
        success_curve=tuple(_mean(pooled > threshold) for threshold in GOT10K_THRESHOLDS),
        sequences=sequences,
    )


def frame_times(result: SequenceResult) -> np.ndarray:
    """Per-frame seconds that a result without its own implies: every frame, the first (init) included, gets the
    mean update time, so GOT-10k's speed (mean of ``1 / t``) equals the result's fps. NaN when nothing was updated."""
    updated = result.updates
    return np.full(result.frames, result.update_seconds / updated if updated > 0 else np.nan)


def first_frame_size(sequence: Sequence) -> tuple[int, int]:
    """The (width, height) of a sequence's first frame: GOT-10k's ``meta_info.ini`` resolution."""
    frames = sequence.frames()
    try:
        height, width = next(frames).shape[:2]
    finally:
        frames.close()
    return width, height


def benchmark_summary(
    benchmark: str,
    results: Iterable[SequenceResult],
    sequences: Iterable[Sequence],
    times: Mapping[str, np.ndarray] | None = None,
    resolutions: Mapping[str, tuple[int, int]] | None = None,
) -> OpeBenchmarkScores | Got10kScores:
    """``benchmark``'s official summary of ``results`` against their ``sequences`` (matched by name).

    A sequence's ``absent`` flags are LaSOT's absent frames and the complement of GOT-10k's visible ones. GOT-10k
    also takes per-frame seconds (``times``, else ``frame_times``) and each image's (width, height)
    (``resolutions``, else the first frame's size). A test-split sequence (``scored`` False) cannot be scored here.
    """
    if benchmark not in BENCHMARKS:
        raise InputError(f"unknown benchmark {benchmark!r}: choose one of {', '.join(BENCHMARKS)}")
    results = list(results)
    by_name = {s.name: s for s in sequences}
    missing = [r.name for r in results if r.name not in by_name]
    if missing:
        raise InputError(f"no sequence named {missing[0]} among the sequences given: score results against the sequences they came from")
    pairs = [(r, by_name[r.name]) for r in results]
    blind = [s.name for _, s in pairs if not s.scored]
    if blind:
        raise InputError(
            f"sequence {blind[0]} has ground truth only on its first frame (a GOT-10k or TrackingNet test split): "
            "write the result files and upload the zip to the benchmark's evaluation server"
        )
    if benchmark == "got10k":
        times = times or {}
        resolutions = resolutions or {}
        ious = {
            r.name: got10k_ious(r.boxes, s.groundtruth, ~s.absent, resolutions.get(r.name) or first_frame_size(s))
            for r, s in pairs
        }
        return got10k_scores(ious, {r.name: times[r.name] if r.name in times else frame_times(r) for r, _ in pairs})
    if benchmark == "lasot":
        curves = {r.name: lasot_curves(r.boxes, s.groundtruth, s.absent) for r, s in pairs}
    elif benchmark == "uav123":
        curves = {r.name: uav123_curves(r.boxes, s.groundtruth) for r, s in pairs}
    else:
        curves = {r.name: otb_curves(r.boxes, s.groundtruth) for r, s in pairs}
    return ope_benchmark_scores(benchmark, curves)
