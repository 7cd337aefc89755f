"""One-pass evaluation (OPE) of a tracker over annotated sequences, and the files it leaves behind."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .datasets import Sequence
from .errors import OutputError
from .files import write_atomic
from .metrics import LostScores, OpeScores, lost_scores, ope_scores
from .records import FieldsJson
from .spatial_robustness import GROUND_TRUTH, StartPerturbation
from .tracker import SiameseTracker


# eq=False: comparing box arrays field by field has no single truth value.
@dataclass(frozen=True, eq=False)
class SequenceResult:
    name: str
    boxes: np.ndarray  # (N, 4) x, y, w, h; the first row is the initial ground truth
    #: over the frames whose target is present (see ``metrics``: absent frames are left out); None for a sequence
    #: whose ground truth is its first box alone (``Sequence.scored`` False: a test split scored by a server)
    scores: OpeScores | None
    #: the lost flag on the updated frames, against the target's absence; None where ``scores`` is
    lost: LostScores | None
    #: frames updated / wall time of the update calls (crop + inference + post-processing);
    #: frame decoding and init are excluded.
    fps: float
    frames: int
    update_seconds: float

    @property
    def updates(self) -> int:
        """How many frames the tracker updated on: every one after the first, offline."""
        return self.frames - 1


def score_frames(sequence: Sequence, boxes: np.ndarray, lost: np.ndarray) -> tuple[OpeScores | None, LostScores | None]:
    """The scores of the boxes and lost flags shown on the first ``len(boxes)`` frames of ``sequence``: OPE over the
    frames whose target is present, the lost flag (from the second frame) against absence; none for a sequence that
    is not ``scored``."""
    if not sequence.scored:
        return None, None
    count = len(boxes)
    absent, groundtruth = sequence.absent[:count], sequence.groundtruth[:count]
    return ope_scores(boxes[~absent], groundtruth[~absent]), lost_scores(lost[1:], absent[1:])


def track_sequence(
    tracker: SiameseTracker, sequence: Sequence, on_frame: Callable[[], None] | None = None, start: StartPerturbation = GROUND_TRUTH
) -> SequenceResult:
    """Initialise on the first ground-truth box (perturbed by ``start``, for OTB's spatial robustness evaluation) and
    track every later frame once. The first frame's box stays the ground truth. The scores leave out the frames whose
    target is absent, where the lost flag is scored instead; a sequence that is not ``scored`` gets none."""
    boxes = np.empty((len(sequence), 4))
    lost = np.zeros(len(sequence), bool)
    update_seconds = 0.0
    frames = sequence.frames()
    first = next(frames)
    boxes[0] = sequence.groundtruth[0]
    tracker.init(first, start.apply(boxes[0]))
    count = 1
    for frame in frames:
        began = time.perf_counter()
        result = tracker.update(frame)
        update_seconds += time.perf_counter() - began
        boxes[count] = result.box
        lost[count] = result.lost
        count += 1
        if on_frame is not None:
            on_frame()
    boxes = boxes[:count]
    scores, lost_record = score_frames(sequence, boxes, lost[:count])
    updated = count - 1
    return SequenceResult(
        name=sequence.name,
        boxes=boxes,
        scores=scores,
        lost=lost_record,
        fps=updated / update_seconds if update_seconds > 0 else float("nan"),
        frames=count,
        update_seconds=update_seconds,
    )


@dataclass(frozen=True)
class SequenceSummary(FieldsJson):
    """One sequence's scores in ``summary.json``, or their mean over every sequence."""

    auc: float
    precision: float
    norm_precision: float
    fps: float
    frames: int

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SequenceSummary:
        floats = {key: float(raw[key]) for key in ("auc", "precision", "norm_precision", "fps")}
        return cls(**floats, frames=int(raw["frames"]))


def _lost_json(scores: LostScores) -> dict[str, Any]:
    return {**dataclasses.asdict(scores), "recall": scores.recall, "false_alarms": scores.false_alarms}


def _lost_from_json(raw: Mapping[str, Any]) -> LostScores:
    return LostScores(*(int(raw[f.name]) for f in dataclasses.fields(LostScores)))


@dataclass(frozen=True)
class EvalSummary:
    """An evaluation's ``summary.json``: what was evaluated, per-sequence scores and their mean, and the lost flag's
    record per sequence and pooled over every frame (``lost.all`` in the JSON).

    The mean of auc/precision/norm_precision is over sequences; the mean fps is all updated frames over all update
    time, and ``frames`` is the total. Summaries written before ``lost`` was recorded read with no lost records.
    """

    sequences: Mapping[str, SequenceSummary]
    mean: SequenceSummary
    lost: Mapping[str, LostScores]
    lost_all: LostScores
    bundle: str | None = None
    precision: str | None = None
    backend: str | None = None

    def to_json(self) -> dict[str, Any]:
        labels = {key: getattr(self, key) for key in ("bundle", "precision", "backend") if getattr(self, key) is not None}
        lost = {name: _lost_json(scores) for name, scores in self.lost.items()} | {"all": _lost_json(self.lost_all)}
        return labels | {
            "sequences": {name: s.to_json() for name, s in self.sequences.items()},
            "mean": self.mean.to_json(),
            "lost": lost,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> EvalSummary:
        lost = {name: _lost_from_json(scores) for name, scores in raw.get("lost", {}).items()}
        return cls(
            sequences={name: SequenceSummary.from_json(s) for name, s in raw["sequences"].items()},
            mean=SequenceSummary.from_json(raw["mean"]),
            lost={name: scores for name, scores in lost.items() if name != "all"},
            lost_all=lost.get("all", LostScores(0, 0, 0, 0)),
            bundle=raw.get("bundle"),
            precision=raw.get("precision"),
            backend=raw.get("backend"),
        )


def summarise(results: Iterable[SequenceResult], bundle: str | None = None, precision: str | None = None, backend: str | None = None) -> EvalSummary:
    """The summary of ``results``: per-sequence scores, their mean and the lost flag's record (see ``EvalSummary``).
    Sequences without scores (a test split) count in the fps and frames only; with none scored the mean scores are NaN."""
    results = list(results)
    scored = [r for r in results if r.scores is not None]
    updated = sum(r.updates for r in results)
    seconds = sum(r.update_seconds for r in results)

    def mean_of(key: str) -> float:
        return float(np.mean([getattr(r.scores, key) for r in scored])) if scored else float("nan")

    mean = SequenceSummary(
        auc=mean_of("auc"),
        precision=mean_of("precision"),
        norm_precision=mean_of("norm_precision"),
        fps=updated / seconds if seconds > 0 else float("nan"),
        frames=sum(r.frames for r in results),
    )
    return EvalSummary(
        sequences={r.name: SequenceSummary(r.scores.auc, r.scores.precision, r.scores.norm_precision, r.fps, r.frames) for r in scored},
        mean=mean,
        lost={r.name: r.lost for r in scored},
        lost_all=sum((r.lost for r in scored), LostScores(0, 0, 0, 0)),
        bundle=bundle,
        precision=precision,
        backend=backend,
    )


def format_boxes(boxes: np.ndarray) -> str:
    return "".join(f"{x:.2f},{y:.2f},{w:.2f},{h:.2f}\n" for x, y, w, h in boxes)


EVAL_TOOL = "edgetrack eval"


def result_names(sequences: Iterable[SequenceResult | Sequence]) -> list[str]:
    """The files ``write_results`` writes for the results of ``sequences``."""
    return [f"{s.name}.txt" for s in sequences] + ["summary.json"]


def previous_results(folder: Path) -> set[str]:
    """What an evaluation folder written before manifests holds: summary.json and one file per sequence it names."""
    try:
        sequences = json.loads((folder / "summary.json").read_text())["sequences"]
        return {"summary.json", *(f"{name}.txt" for name in sequences)}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def write_results(out: Path, results: list[SequenceResult], bundle: str, precision: str, backend: str) -> EvalSummary:
    """Write ``out/summary.json`` plus ``out/NAME.txt`` (one ``x,y,w,h`` line per frame); return the summary."""
    summary = summarise(results, bundle, precision, backend)
    try:
        for r, name in zip(results, result_names(results)):
            write_atomic(out / name, format_boxes(r.boxes))
        write_atomic(out / "summary.json", json.dumps(summary.to_json(), indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write results to {out}: {exc.strerror or exc}; choose another --out") from None
    return summary
