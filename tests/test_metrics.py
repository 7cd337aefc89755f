"""OPE metrics: hand-computed values, and agreement with the got10k toolkit on random and real-sequence boxes."""


import numpy as np
import pytest

from got10k.utils import metrics as got10k_metrics

from edgetrack.runtime.datasets import read_groundtruth
from edgetrack.runtime.errors import InputError
from edgetrack.runtime.metrics import (
    NORM_PRECISION_THRESHOLDS,
    PRECISION_THRESHOLDS,
    SUCCESS_THRESHOLDS,
    OpeScores,
    center_error,
    normalized_center_error,
    ope_scores,
    precision_curve,
    rect_iou,
    success_curve,
)

from conftest import DATA


def got10k_ope(boxes: np.ndarray, anno: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """got10k's ExperimentOTB.report for one sequence: curves, success score and precision score.

    got10k 0.1.3's experiments module does not import here (it needs `six` without declaring it) and its class
    wants a dataset on disk, so `_calc_curves` and `report` are restated around got10k's own metric functions.
    """
    boxes = boxes.copy()
    boxes[0] = anno[0]
    ious = got10k_metrics.rect_iou(boxes, anno)[:, np.newaxis]
    errors = got10k_metrics.center_error(boxes, anno)[:, np.newaxis]
    succ = np.mean(np.greater(ious, np.linspace(0, 1, 21)[np.newaxis, :]), axis=0)
    prec = np.mean(np.less_equal(errors, np.arange(0, 51)[np.newaxis, :]), axis=0)
    return succ, prec, float(np.mean(succ)), float(prec[20])


def tracking_like(gt: np.ndarray, seed: int) -> np.ndarray:
    """Predictions that jitter and drift around the ground truth, rescale, and lose the target for a while."""
    rng = np.random.default_rng(seed)
    n = len(gt)
    wh = gt[:, 2:]
    drift = np.cumsum(rng.normal(0, 0.02, size=(n, 2)), axis=0) * wh
    jitter = rng.normal(0, 0.05, size=(n, 2)) * wh
    scale = np.exp(rng.normal(0, 0.1, size=(n, 2)))
    pred = np.concatenate([gt[:, :2] + drift + jitter, wh * scale], axis=1)
    lost = slice(n // 2, n // 2 + n // 10)
    pred[lost, :2] += 4 * wh[lost]
    return pred


# ----------------------------------------------------------------------------------------- hand-computed values


def test_rect_iou_by_hand():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    others = np.array([[5, 5, 10, 10], [0, 0, 5, 10], [10, 0, 10, 10], [0, 0, 10, 10]], float)
    # 1) overlap is the 5x5 square [5,10]^2: 25 / (100 + 100 - 25) = 1/7
    # 2) the half box lies inside: 50 / 100
    # 3) boxes touching at x=10 share no area (with a +1 convention they would share a column)
    # 4) identical boxes
    np.testing.assert_allclose(rect_iou(boxes, others), [1 / 7, 0.5, 0.0, 1.0], rtol=1e-12)


def test_rect_iou_never_exceeds_one():
    # (318.48 + 30.99) - 318.48 rounds above 30.99, so the intersection of this box with itself outgrows its
    # area and, unclipped, the IoU comes out above 1 and passes the success curve's last threshold (> 1.0)
    box = np.array([[318.48, 134.89, 30.99, 29.17]])
    assert rect_iou(box, box)[0] == 1.0
    assert success_curve(rect_iou(box, box))[-1] == 0.0


def test_center_error_by_hand():
    # centres (wh-1)/2 from the corner: (4.5, 4.5) and (2 + 5.5, 3 + 5.5) = (7.5, 8.5); a 3-4-5 triangle
    assert center_error(np.array([[0.0, 0, 10, 10]]), np.array([[2.0, 3, 12, 12]]))[0] == pytest.approx(5.0)


def test_normalized_center_error_divides_by_groundtruth_size():
    # centres (-2 + 9.5, -2 + 19.5) = (7.5, 17.5) and (4.5, 9.5) differ by (3, 8); over the gt size (10, 20):
    # (0.3, 0.4) -> 0.5. Dividing by the predicted size (20, 40) instead would give 0.25.
    pred = np.array([[-2.0, -2, 20, 40]])
    gt = np.array([[0.0, 0, 10, 20]])
    assert normalized_center_error(pred, gt)[0] == pytest.approx(0.5)


def test_success_curve_and_auc_by_hand():
    # IoU 0.5 beats thresholds 0..0.45 (10 of them, 0.5 itself is not > 0.5); 1.0 beats 0..0.95 (20); 0 beats none.
    curve = success_curve(np.array([0.0, 0.5, 1.0]))
    expected = np.array([2 / 3] * 10 + [1 / 3] * 10 + [0.0])
    np.testing.assert_allclose(curve, expected)
    assert SUCCESS_THRESHOLDS[10] == 0.5
    # AUC = (0 + 10 + 20) / (3 * 21)
    assert np.mean(curve) == pytest.approx(30 / 63)


def test_precision_curve_by_hand():
    # <= includes the 20 px frame; NaN (invalid ground truth) fails every threshold but stays in the denominator
    curve = precision_curve(np.array([0.0, 20.0, 20.5, np.nan]))
    assert len(curve) == len(PRECISION_THRESHOLDS) == 51
    assert curve[0] == 0.25
    assert curve[20] == 0.5
    assert curve[21] == 0.75
    assert curve[50] == 0.75


def test_norm_precision_curve_uses_hundredths():
    curve = precision_curve(np.array([0.2, 0.21]), NORM_PRECISION_THRESHOLDS)
    assert NORM_PRECISION_THRESHOLDS[20] == 0.2
    assert curve[20] == 0.5
    assert curve[21] == 1.0


def test_ope_scores_by_hand():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 20]], float)
    boxes = np.array(
        [
            [50, 50, 10, 10],  # frame 0 is replaced by the initial box, as got10k's report does: IoU 1
            [0, 0, 5, 10],  # IoU 0.5, centre error 2.5 px, normalised 0.25
            [30, 0, 10, 20],  # IoU 0, centre error 30 px, normalised 3
        ]
    )
    scores = ope_scores(boxes, gt)
    assert isinstance(scores, OpeScores)
    # IoUs 1 - eps, 0.5, 0: success counts 20, 10, 0 over 3 * 21 thresholds
    assert scores.auc == pytest.approx(30 / 63)
    assert scores.precision == pytest.approx(2 / 3)
    assert scores.norm_precision == pytest.approx(1 / 3)


def test_nan_groundtruth_counts_as_failure_like_got10k():
    gt = np.array([[0, 0, 10, 10], [np.nan] * 4], float)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    ours = rect_iou(boxes, gt)
    theirs = got10k_metrics.rect_iou(boxes.copy(), gt.copy())
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    scores = ope_scores(boxes, gt)
    # frame 0 succeeds at 20 of 21 thresholds, the NaN frame at none, and both are counted
    assert scores.auc == pytest.approx(20 / 42)
    assert scores.precision == 0.5
    assert scores.norm_precision == 0.5


def test_mismatched_shapes_are_one_line_errors():
    with pytest.raises(InputError, match=r"\(3, 4\) and \(2, 4\)"):
        ope_scores(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(InputError, match="empty"):
        ope_scores(np.zeros((0, 4)), np.zeros((0, 4)))


# ------------------------------------------------------------------------------------------- got10k agreement


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    boxes = np.concatenate([rng.uniform(0, 200, (n, 2)), rng.uniform(1, 80, (n, 2))], axis=1)
    boxes[::17, 2] = 0  # degenerate boxes
    boxes[::23, 3] = -5  # invalid ones, as a diverged tracker may report
    return boxes


def test_rect_iou_and_center_error_equal_got10k_on_random_boxes():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 2000), random_boxes(rng, 2000)
    # close pairs too, otherwise almost every random pair is disjoint
    b[::2] = a[::2] + rng.normal(0, 5, (1000, 4))
    ours = rect_iou(a, b)
    assert 0.2 < np.mean(ours > 0) < 0.8
    np.testing.assert_allclose(ours, got10k_metrics.rect_iou(a.copy(), b.copy()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(center_error(a, b), got10k_metrics.center_error(a, b), rtol=1e-12)


def test_ope_equals_got10k_on_random_boxes():
    rng = np.random.default_rng(1)
    gt = random_boxes(rng, 300)
    boxes = gt + rng.normal(0, 8, gt.shape)
    succ, prec, auc, p20 = got10k_ope(boxes, gt)
    started = np.vstack([gt[:1], boxes[1:]])
    np.testing.assert_allclose(success_curve(rect_iou(started, gt)), succ)
    np.testing.assert_allclose(precision_curve(center_error(started, gt)), prec)
    scores = ope_scores(boxes, gt)
    assert scores.auc == pytest.approx(auc, abs=1e-12)
    assert scores.precision == pytest.approx(p20, abs=1e-12)


def test_ope_equals_got10k_on_perturbed_crossing():
    gt_file = DATA / "sequences" / "Crossing" / "groundtruth_rect.txt"
    assert gt_file.is_file(), f"shared data not found at {DATA} (set EDGETRACK_DATA)"
    gt = read_groundtruth(gt_file)
    assert gt.shape == (120, 4)
    for seed in range(5):
        boxes = tracking_like(gt, seed)
        succ, prec, auc, p20 = got10k_ope(boxes, gt)
        scores = ope_scores(boxes, gt)
        # a perturbation that leaves the scores trivial (all 0 or all 1) would not test anything
        assert 0.1 < auc < 0.9 and 0.1 < p20 < 1.0
        assert scores.auc == pytest.approx(auc, abs=1e-12)
        assert scores.precision == pytest.approx(p20, abs=1e-12)
        np.testing.assert_allclose(rect_iou(boxes, gt), got10k_metrics.rect_iou(boxes.copy(), gt.copy()), atol=1e-12)
