"""Official benchmark scores against the code that publishes them: the got10k toolkit's own experiments (GOT-10k on a
val split written in the real layout, OTB and UAV123 reports read from result files we wrote), and hand-computed
cases for LaSOT's absent frames (its toolkit is MATLAB)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from got10k.utils import metrics as got10k_metrics

from edgetrack.runtime.benchmark_metrics import (
    GOT10K_THRESHOLDS,
    Got10kScores,
    OpeBenchmarkScores,
    OpeCurves,
    benchmark_summary,
    clip_to_image,
    frame_times,
    lasot_curves,
    ope_benchmark_scores,
    otb_curves,
)
from edgetrack.runtime.datasets import Sequence
from edgetrack.runtime.errors import InputError
from edgetrack.runtime.evaluate import SequenceResult
from edgetrack.runtime.metrics import PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS, LostScores, OpeScores
from edgetrack.runtime.result_files import write_benchmark_files

TOL = 1e-9


def got10k_experiments():
    """got10k.experiments (it imports `six` without declaring it; the dev extra installs six)."""
    import got10k.experiments as experiments

    return experiments


def result(name: str, boxes: np.ndarray, update_seconds: float = 1.0) -> SequenceResult:
    return SequenceResult(
        name=name,
        boxes=np.asarray(boxes, dtype=np.float64),
        scores=OpeScores(0.0, 0.0, 0.0),
        lost=LostScores(0, 0, 0, 0),
        fps=0.0,
        frames=len(boxes),
        update_seconds=update_seconds,
    )


def random_track(rng: np.random.Generator, frames: int, width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and a noisy prediction, both rounded to the 3 decimals the result files keep, some boxes
    reaching outside the image."""
    gt = np.column_stack([
        rng.uniform(-0.2 * width, 0.8 * width, frames),
        rng.uniform(-0.2 * height, 0.8 * height, frames),
        rng.uniform(5, 0.5 * width, frames),
        rng.uniform(5, 0.5 * height, frames),
    ])
    pred = gt + rng.normal(0, 6, gt.shape)
    pred[:, 2:] = np.abs(pred[:, 2:]) + 1
    return np.round(gt, 3), np.round(pred, 3)


# --- GOT-10k --------------------------------------------------------------------------------------------------


def write_got10k_val(root: Path, rng: np.random.Generator, sizes: dict[str, tuple[int, int, int]]):
    """A GOT-10k val split in the real layout (list.txt, frames, groundtruth.txt, meta_info.ini and the .label
    files); returns each sequence's ground truth and cover labels."""
    val = root / "val"
    val.mkdir(parents=True)
    (val / "list.txt").write_text("\n".join(sizes) + "\n")
    truth = {}
    for name, (frames, width, height) in sizes.items():
        folder = val / name
        folder.mkdir()
        image = np.zeros((height, width, 3), np.uint8)
        for i in range(frames):
            cv2.imwrite(str(folder / f"{i + 1:08d}.jpg"), image)
        gt, _ = random_track(rng, frames, width, height)
        cover = rng.integers(0, 9, frames)
        cover[0] = 8
        np.savetxt(folder / "groundtruth.txt", gt, fmt="%.3f", delimiter=",")
        (folder / "meta_info.ini").write_text(f"[METAINFO]\nobject_class: thing\nresolution: ({width}, {height})\n")
        np.savetxt(folder / "cover.label", cover, fmt="%d")
        np.savetxt(folder / "absence.label", (cover == 0).astype(int), fmt="%d")
        np.savetxt(folder / "cut_by_image.label", np.zeros(frames, int), fmt="%d")
        truth[name] = (gt, cover, folder)
    return truth


def test_got10k_scores_equal_got10k_report_on_a_val_split(tmp_path, monkeypatch):
    experiments = got10k_experiments()
    rng = np.random.default_rng(7)
    sizes = {"GOT-10k_Val_000001": (25, 64, 48), "GOT-10k_Val_000002": (18, 80, 60), "GOT-10k_Val_000003": (30, 50, 70)}
    truth = write_got10k_val(tmp_path / "data", rng, sizes)
    results, sequences, times = [], [], {}
    for name, (gt, cover, folder) in truth.items():
        _, pred = random_track(rng, len(gt), *sizes[name][1:])
        results.append(result(name, pred))
        sequences.append(Sequence(name, gt, frame_paths=tuple(sorted(folder.glob("*.jpg"))), absent=cover == 0))
        seconds = np.round(rng.uniform(0.004, 0.03, len(gt)), 8)
        seconds[3] = 0.0  # got10k leaves out non-positive and NaN times
        seconds[4] = np.nan
        times[name] = seconds
    write_benchmark_files("got10k", tmp_path / "results" / "GOT-10k" / "edge", results, times)

    experiment = experiments.ExperimentGOT10k(str(tmp_path / "data"), "val", str(tmp_path / "results"), str(tmp_path / "reports"))
    monkeypatch.setattr(experiment, "plot_curves", lambda *args: None)
    reference = experiment.report(["edge"])["edge"]
    # The resolution is read from each sequence's first frame, as meta_info.ini gives it.
    ours = benchmark_summary("got10k", results, sequences, times)

    assert isinstance(ours, Got10kScores)
    overall = reference["overall"]
    assert abs(ours.ao - overall["ao"]) < TOL
    assert abs(ours.sr50 - overall["sr"]) < TOL
    assert abs(ours.speed_fps - overall["speed_fps"]) < TOL
    np.testing.assert_allclose(ours.success_curve, overall["succ_curve"], rtol=0, atol=TOL)
    assert len(ours.success_curve) == len(GOT10K_THRESHOLDS) == 101
    for name, seq in reference["seq_wise"].items():
        assert abs(ours.sequences[name].ao - seq["ao"]) < TOL
        assert abs(ours.sequences[name].sr50 - seq["sr"]) < TOL
        assert abs(ours.sequences[name].speed_fps - seq["speed_fps"]) < TOL
    # SR0.75 is got10k's SR with 0.75 for 0.5, over the same pooled overlaps got10k scores.
    pooled = []
    for name, (gt, cover, _) in truth.items():
        width, height = sizes[name][1:]
        pred = next(r.boxes for r in results if r.name == name)
        ious = got10k_metrics.rect_iou(pred[1:].copy(), gt[1:].copy(), bound=(width, height))
        pooled.append(ious[cover[1:] > 0])
    assert abs(ours.sr75 - np.mean(np.concatenate(pooled) > 0.75)) < TOL
    assert ours.to_json()["sequences"][sequences[0].name]["sr75"] == ours.sequences[sequences[0].name].sr75


def test_got10k_clipping_keeps_the_width_of_a_box_left_of_the_image():
    clipped = clip_to_image(np.array([[-10.0, 5, 30, 200], [90, 90, 30, 30]]), 100, 80)
    np.testing.assert_array_equal(clipped, [[0, 5, 30, 75], [90, 80, 10, 0]])


def test_got10k_speed_without_per_frame_times_is_the_result_fps():
    r = result("a", np.ones((5, 4)), update_seconds=0.2)
    np.testing.assert_allclose(frame_times(r), 0.05)
    seq = Sequence("a", np.tile([1.0, 1, 10, 10], (5, 1)), video=Path("a.mp4"))
    scores = benchmark_summary("got10k", [r], [seq], resolutions={"a": (100, 100)})
    assert scores.speed_fps == pytest.approx(20.0)
    assert scores.ao == pytest.approx(0.01)  # the prediction 1,1,1,1 inside the ground truth 1,1,10,10
    assert np.isnan(frame_times(result("b", np.ones((1, 4))))).all()


# --- OTB and UAV123 ---------------------------------------------------------------------------------------------


class ListedSequences:
    """What got10k's report reads of a dataset: the sequences' names and (frames, ground truth) pairs."""

    def __init__(self, truth: dict[str, np.ndarray]):
        self.seq_names = list(truth)
        self._annos = list(truth.values())

    def __len__(self):
        return len(self._annos)

    def __iter__(self):
        return iter([([], anno.copy()) for anno in self._annos])


@pytest.mark.parametrize("benchmark, experiment_name", [("otb", "ExperimentOTB"), ("uav123", "ExperimentUAV123")])
def test_otb_and_uav123_scores_equal_got10k_report(tmp_path, benchmark, experiment_name):
    experiments = got10k_experiments()
    rng = np.random.default_rng(3)
    truth, results = {}, []
    for name, frames in (("bike1", 40), ("car2", 25)):
        gt, pred = random_track(rng, frames, 300, 200)
        gt[[5, 11]] = np.nan  # UAV123's frames without ground truth
        truth[name] = gt
        results.append(result(name, pred))
    cls = getattr(experiments, experiment_name)
    experiment = cls.__new__(cls)
    experiment.dataset = ListedSequences(truth)
    experiment.result_dir, experiment.report_dir = str(tmp_path / "results"), str(tmp_path / "reports")
    experiment.nbins_iou, experiment.nbins_ce = 21, 51
    experiment.plot_curves = lambda *args: None
    write_benchmark_files(benchmark, tmp_path / "results" / "edge", results)

    with np.errstate(invalid="ignore"):
        reference = experiment.report(["edge"])["edge"]["overall"]
    sequences = [Sequence(name, gt, video=tmp_path / f"{name}.mp4") for name, gt in truth.items()]
    ours = benchmark_summary(benchmark, results, sequences)

    assert isinstance(ours, OpeBenchmarkScores)
    assert abs(ours.auc - reference["success_score"]) < TOL
    assert abs(ours.precision - reference["precision_score"]) < TOL
    np.testing.assert_allclose(ours.success_curve, reference["success_curve"], rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.precision_curve, reference["precision_curve"], rtol=0, atol=TOL)


# --- LaSOT ------------------------------------------------------------------------------------------------------


def test_lasot_equals_got10k_curves_where_the_target_is_always_present():
    rng = np.random.default_rng(11)
    gt, pred = random_track(rng, 60, 640, 360)
    gt[:, :2] = np.abs(gt[:, :2]) + 1  # LaSOT counts a box at x or y <= 0 as invalid ground truth
    curves = lasot_curves(pred, gt, np.zeros(len(gt), bool))
    pred = pred.copy()
    pred[0] = gt[0]
    ious = got10k_metrics.rect_iou(pred, gt)
    errors = got10k_metrics.center_error(pred, gt)
    np.testing.assert_allclose(curves.success, np.mean(ious[:, None] > SUCCESS_THRESHOLDS, axis=0), rtol=0, atol=TOL)
    np.testing.assert_allclose(curves.precision, np.mean(errors[:, None] <= PRECISION_THRESHOLDS, axis=0), rtol=0, atol=TOL)
    assert curves.scores().auc == pytest.approx(otb_curves(pred, gt).scores().auc, abs=TOL)


def hand_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gt = np.array([[10.0, 10, 10, 10]] * 4)
    pred = np.array([
        [0.0, 0, 1, 1],  # frame 0 becomes the initial box: overlap 1, error 0
        [300.0, 300, 10, 10],  # absent: scores nothing
        [13.0, 10, 10, 10],  # overlap 70/130, error 3 px, normalised error 0.3
        [110.0, 10, 10, 10],  # overlap 0, error 100 px
    ])
    return pred, gt, np.array([False, True, False, False])


def test_lasot_absent_frames_count_as_failures_in_the_denominator():
    pred, gt, absent = hand_case()
    scores = lasot_curves(pred, gt, absent).scores()
    # Success: frames 0 and 2 pass the 11 thresholds 0..0.5, frame 0 alone the 9 from 0.55 to 0.95, none 1.0.
    assert scores.auc == pytest.approx((11 * 2 / 4 + 9 * 1 / 4) / 21, abs=TOL)
    assert scores.precision == pytest.approx(2 / 4, abs=TOL)
    assert scores.norm_precision == pytest.approx(1 / 4, abs=TOL)
    seq = Sequence("a", gt, video=Path("a.mp4"), absent=absent)
    summary = benchmark_summary("lasot", [result("a", pred)], [seq])
    assert (summary.auc, summary.precision, summary.norm_precision) == pytest.approx((scores.auc, scores.precision, scores.norm_precision))


def test_lasot_toolkit_rules_for_bad_predictions_and_bad_ground_truth():
    gt = np.array([[10.0, 10, 10, 10], [10, 10, 10, 10], [0, 10, 10, 10]])
    # A NaN prediction takes the previous frame's (a perfect one here).
    pred = np.array([[10.0, 10, 10, 10], [10, 10, 10, 10], [np.nan, np.nan, np.nan, np.nan]])
    repaired = lasot_curves(pred, gt[[0, 1, 1]], np.zeros(3, bool))
    assert repaired.success[-2] == pytest.approx(1.0)
    # Ground truth at x = 0 is invalid to the toolkit: overlap -1 fails, centre error -1 passes.
    invalid = lasot_curves(gt.copy(), gt, np.zeros(3, bool))
    assert invalid.success[0] == pytest.approx(2 / 3)
    assert invalid.precision[0] == pytest.approx(1.0)
    assert invalid.norm_precision[0] == pytest.approx(1.0)


def test_lasot_mean_leaves_out_sequences_whose_curve_is_all_zero():
    good = lasot_curves(*hand_case())
    zero = OpeCurves(np.zeros(21), np.zeros(51), np.zeros(51))
    assert ope_benchmark_scores("lasot", {"a": good, "b": zero}).auc == pytest.approx(good.scores().auc)
    assert ope_benchmark_scores("otb", {"a": good, "b": zero}).auc == pytest.approx(good.scores().auc / 2)


@pytest.mark.parametrize("benchmark", ["trackingnet", "got10k"])
def test_a_test_split_without_ground_truth_points_to_the_server(benchmark):
    gt = np.full((3, 4), np.nan)
    gt[0] = [1, 1, 5, 5]
    sequence = Sequence("a", gt, video=Path("a.mp4"), scored=False)
    with pytest.raises(InputError, match="upload the zip to the benchmark's evaluation server"):
        benchmark_summary(benchmark, [result("a", np.ones((3, 4)))], [sequence])


def test_summary_names_an_unknown_benchmark_and_a_missing_sequence():
    with pytest.raises(InputError, match="unknown benchmark 'vot'"):
        benchmark_summary("vot", [], [])
    with pytest.raises(InputError, match="no sequence named a"):
        benchmark_summary("otb", [result("a", np.ones((2, 4)))], [])
