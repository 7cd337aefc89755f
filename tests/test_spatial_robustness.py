"""OTB's spatial robustness evaluation: the perturbed first boxes against hand-computed ones, the evaluator starting
from them while scoring against the ground truth, and the student benchmark's scores as means over the starts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgetrack.runtime.evaluate import SequenceResult, track_sequence
from edgetrack.runtime.metrics import LostScores, OpeScores
from edgetrack.runtime.spatial_robustness import GROUND_TRUTH, StartPerturbation, sre_starts
from edgetrack.runtime.tracker import TrackResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from conftest import blank_sequence  # noqa: E402
from student_benchmark import Entry, compare  # noqa: E402

BOX = np.array([10.0, 20.0, 100.0, 50.0])  # centre (60, 45)


def test_otb_starts_shift_by_a_tenth_and_scale_about_the_centre():
    starts = {s.name: s.apply(BOX).tolist() for s in sre_starts(1.0)}
    assert len(starts) == 13
    assert starts["ground-truth"] == BOX.tolist()
    assert starts["left"] == [0, 20, 100, 50]
    assert starts["right"] == [20, 20, 100, 50]
    assert starts["up"] == [10, 15, 100, 50]
    assert starts["down"] == [10, 25, 100, 50]
    assert starts["top-left"] == [0, 15, 100, 50]
    assert starts["bottom-right"] == [20, 25, 100, 50]
    assert starts["scale-0.8"] == pytest.approx([20, 25, 80, 40])
    assert starts["scale-1.2"] == pytest.approx([0, 15, 120, 60])


def test_magnitude_scales_shifts_and_scales_alike():
    starts = {s.name: s.apply(BOX) for s in sre_starts(0.4)}
    assert starts["left"] == pytest.approx([6, 20, 100, 50])
    assert starts["bottom-left"] == pytest.approx([6, 22, 100, 50])
    assert [starts[f"scale-{k}"][2] for k in ("0.8", "0.9", "1.1", "1.2")] == pytest.approx([92, 96, 104, 108])


@pytest.mark.parametrize("magnitude", [0.0, -1.0, float("nan")])
def test_a_magnitude_that_is_not_positive_is_refused(magnitude):
    with pytest.raises(ValueError, match="must be above 0"):
        sre_starts(magnitude)


class RecordingTracker:
    """Keeps the box it is initialised on and answers every update with the same box."""

    def __init__(self, answer):
        self.answer, self.started_on = answer, None

    def init(self, frame, box):
        self.started_on = np.asarray(box).tolist()

    def update(self, frame):
        return TrackResult(tuple(self.answer), 1.0, False)


def test_the_tracker_starts_on_the_perturbed_box_and_is_scored_against_the_ground_truth(tmp_path):
    sequence = blank_sequence(np.tile(BOX, (3, 1)), tmp_path)
    tracker = RecordingTracker(BOX)
    result = track_sequence(tracker, sequence, start=StartPerturbation("left", shift_x=-0.1))
    assert tracker.started_on == [0, 20, 100, 50]
    # the first frame keeps the ground truth and the updates answer it exactly: every IoU is 1, which passes the 20
    # of the 21 success thresholds below 1 (success counts IoU > t)
    assert result.boxes[0].tolist() == BOX.tolist()
    assert result.scores.auc == pytest.approx(20 / 21)
    track_sequence(tracker, sequence)
    assert tracker.started_on == BOX.tolist()


def result(name: str, auc: float) -> SequenceResult:
    return SequenceResult(name, np.zeros((2, 4)), OpeScores(auc, auc, auc), LostScores(0, 1, 0, 0), 100.0, 2, 0.01)


def entry(name: str, aucs: dict[str, list[float]]) -> Entry:
    e = Entry(name, "scripted", tracker=None)
    e.results = {sequence: [result(sequence, a) for a in per_start] for sequence, per_start in aucs.items()}
    e.timing = {0: [4, 0.04]}
    return e


def test_the_benchmark_scores_a_sequence_by_its_mean_over_the_starts():
    starts = (GROUND_TRUTH, StartPerturbation("left", shift_x=-0.1))
    reference = entry("nanotrack-v2", {"a": [0.6, 0.4], "b": [0.8, 0.8]}).row(starts)
    student = entry("student", {"a": [0.7, 0.7], "b": [0.7, 0.5]}).row(starts)
    assert reference.sequences["a"].auc == pytest.approx(0.5)
    assert student.sequences["b"].auc == pytest.approx(0.6)
    assert reference.auc == pytest.approx(0.65) and student.auc == pytest.approx(0.65)
    assert reference.start_aucs == pytest.approx({"ground-truth": 0.7, "left": 0.6})
    assert student.start_aucs == pytest.approx({"ground-truth": 0.7, "left": 0.6})
    # paired over the sequences' means: a +0.2, b -0.2
    _, compared = compare([reference, student])
    assert compared.vs_reference.mean == pytest.approx(0.0)
    assert compared.vs_reference.low == pytest.approx(-0.2) and compared.vs_reference.high == pytest.approx(0.2)
