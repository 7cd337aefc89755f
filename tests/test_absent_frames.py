"""The evaluator's convention for frames whose target is absent (LaSOT / GOT-10k style): they are left out of the
success and precision curves, and they are where the lost flag is scored. Values are computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.evaluate import EvalSummary, SequenceSummary, summarise, track_sequence, write_results
from edgetrack.runtime.metrics import LostScores, absent_frames, lost_scores, ope_scores
from edgetrack.runtime.tracker import TrackResult

from conftest import blank_sequence

NAN = [np.nan] * 4


class ScriptedTracker:
    """Answers each update with the next scripted (box, lost)."""

    def __init__(self, answers):
        self.answers = iter(answers)

    def init(self, frame, box):
        return box

    def update(self, frame):
        box, lost = next(self.answers)
        return TrackResult(tuple(box), 0.0 if lost else 1.0, lost)


def test_absent_rows_are_nan_or_empty_boxes():
    gt = np.array([[0, 0, 10, 10], NAN, [1, 1, 0, 5], [1, 1, 5, -1], [np.inf, 0, 1, 1], [2, 2, 3, 3]], float)
    assert absent_frames(gt).tolist() == [False, True, True, True, True, False]


def test_absent_frames_leave_the_curves_and_score_the_lost_flag(tmp_path):
    gt = [[0, 0, 10, 10], [0, 0, 10, 10], NAN, NAN, [0, 0, 10, 10], [0, 0, 10, 10]]
    answers = [
        ([0, 0, 10, 10], False),  # present, exact: IoU 1
        ([50, 50, 10, 10], True),  # absent, flagged: right
        ([50, 50, 10, 10], False),  # absent, not flagged: missed
        ([0, 0, 10, 5], True),  # present, IoU 0.5, flagged: a false alarm
        ([5, 0, 10, 10], False),  # present, IoU 50/150 = 1/3
    ]
    result = track_sequence(ScriptedTracker(answers), blank_sequence(gt, tmp_path))
    # Present frames: the initial box (IoU 1, ope_scores sets it), then IoU 1, 0.5 and 1/3.
    # Success at threshold t counts IoU > t: IoU 1 passes the 20 thresholds below 1, IoU 0.5 passes 0.00..0.45
    # (10), IoU 1/3 passes 0.00..0.30 (7): AUC = (20 + 20 + 10 + 7) / (4 * 21).
    assert result.scores.auc == pytest.approx((20 + 20 + 10 + 7) / 84)
    # Centre errors: 0, 0, 2.5 and 5 px: all within 20 px; normalised 0, 0, 0.25 and 0.5: two of four within 0.2.
    assert result.scores.precision == 1.0
    assert result.scores.norm_precision == 0.5
    assert result.lost.absent_frames == 2 and result.lost.present_frames == 3
    assert result.lost.lost_when_absent == 1 and result.lost.lost_when_present == 1
    assert result.lost.recall == 0.5 and result.lost.false_alarms == pytest.approx(1 / 3)


def test_the_old_convention_counted_absent_frames_as_failures():
    """``ope_scores`` itself stays got10k's OTB experiment: on all six rows, the two absent frames fail everywhere."""
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], NAN, NAN, [0, 0, 10, 10], [0, 0, 10, 10]])
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 10, 10], [50, 50, 10, 10], [0, 0, 10, 5], [5, 0, 10, 10]])
    assert ope_scores(boxes, gt).auc == pytest.approx((20 + 20 + 10 + 7) / 126)


def test_summary_pools_the_lost_flag_over_sequences(tmp_path):
    gt = [[0, 0, 10, 10], NAN, [0, 0, 10, 10]]
    first = track_sequence(ScriptedTracker([([0, 0, 1, 1], True), ([0, 0, 10, 10], True)]), blank_sequence(gt, tmp_path / "a"))
    second = track_sequence(ScriptedTracker([([0, 0, 1, 1], False), ([0, 0, 10, 10], False)]), blank_sequence(gt, tmp_path / "b"))
    summary = summarise([first, second])
    assert summary.lost_all == LostScores(absent_frames=2, present_frames=2, lost_when_absent=1, lost_when_present=1)
    assert summary.to_json()["lost"]["all"] == {
        "absent_frames": 2, "present_frames": 2, "lost_when_absent": 1, "lost_when_present": 1, "recall": 0.5, "false_alarms": 0.5,
    }
    assert lost_scores([True, False, True], [True, True, False]).recall == 0.5


def test_summary_json_reads_back_as_the_summary_written(tmp_path):
    gt = [[0, 0, 10, 10], NAN, [0, 0, 10, 10]]
    result = track_sequence(ScriptedTracker([([0, 0, 1, 1], True), ([0, 0, 10, 10], False)]), blank_sequence(gt, tmp_path / "a"))
    summary = write_results(tmp_path / "out", [result], "toy", "fp32", "onnxruntime")
    raw = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(raw) == ["bundle", "precision", "backend", "sequences", "mean", "lost"]
    assert set(raw["sequences"]["scripted"]) == {"auc", "precision", "norm_precision", "fps", "frames"} and set(raw["lost"]) == {"scripted", "all"}
    assert EvalSummary.from_json(raw) == summary
    assert summary.mean.frames == 3 and summary.lost["scripted"] == summary.lost_all == LostScores(1, 1, 1, 0)


def test_a_summary_written_before_the_lost_flag_was_recorded_still_reads():
    scores = {"auc": 0.5, "precision": 0.6, "norm_precision": 0.7, "fps": 100.0, "frames": 10}
    summary = EvalSummary.from_json({"sequences": {"a": scores}, "mean": scores})
    assert summary.mean == SequenceSummary(0.5, 0.6, 0.7, 100.0, 10) and summary.bundle is None
    assert summary.lost == {} and summary.lost_all == LostScores(0, 0, 0, 0)


def test_the_benchmark_scores_every_sequence_and_its_absent_frames(nanotrack_bundles, data, tmp_path):
    """TLD_pedestrian3 has 28 frames without the target; the other benchmark sequences have none."""
    from test_cli import edgetrack

    dataset = load_dataset(data / "benchmark")
    assert len(dataset.sequences) == 15 and not dataset.skipped
    counts = {s.name: int(absent_frames(s.groundtruth).sum()) for s in dataset.sequences}
    assert counts.pop("TLD_pedestrian3") == 28 and set(counts.values()) == {0}
    run = edgetrack("eval", nanotrack_bundles["v2"].path, "--dataset", data / "benchmark" / "TLD_pedestrian3", "--out", tmp_path)
    assert run.returncode == 0, run.stderr
    lost = json.loads((tmp_path / "summary.json").read_text())["lost"]["TLD_pedestrian3"]
    assert lost["absent_frames"] == 28 and lost["present_frames"] == 183 - 28
    assert "lost" in run.stdout


def test_the_paired_bootstrap_interval():
    from edgetrack.runtime.metrics import paired_bootstrap

    same = paired_bootstrap([0.02] * 15)
    assert (same.mean, same.low, same.high) == pytest.approx((0.02, 0.02, 0.02)) and same.excludes_zero
    spread = paired_bootstrap([-0.1, 0.1] * 8, seed=3)
    assert spread.mean == pytest.approx(0.0) and spread.low < 0 < spread.high and not spread.excludes_zero
    # The resampled means of 16 values of +-0.1 have a standard deviation of 0.1 / 4 = 0.025: the 95% interval is
    # about +-1.96 of it.
    assert spread.high == pytest.approx(1.96 * 0.025, abs=0.006)
    assert paired_bootstrap([0.01, 0.03, 0.02, 0.05], seed=1) == paired_bootstrap([0.01, 0.03, 0.02, 0.05], seed=1)


def test_an_interval_reads_as_the_reports_write_it():
    from edgetrack.runtime.metrics import Interval

    assert str(Interval(-0.0834, -0.1296, -0.0431)) == "-0.083 [-0.130, -0.043]"
    assert str(Interval(0.005, -0.049, 0.048)) == "+0.005 [-0.049, +0.048]"
