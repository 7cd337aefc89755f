"""The distillation losses on hand-made tensors whose values are worked out by hand."""

from __future__ import annotations

import math

import pytest

# The losses are torch; the Python 3.10 run of `make test-py310` has none (its CPU wheel is for 3.11).
pytest.importorskip("torch", reason="torch is not installed in this environment")

import numpy as np
import torch
import torch.nn.functional as F

from edgetrack.distill.losses import (
    LOSS_PRESETS,
    Batch,
    LossConfig,
    ModelOutputs,
    attention_map,
    balanced_cross_entropy,
    box_loss,
    dense_box_log_loss,
    dense_box_loss,
    flat_outputs,
    ground_truth_losses,
    iou_loss,
    response_loss,
    soft_kl,
    student_losses,
)
from edgetrack.runtime import geometry as geo
from edgetrack.runtime.families.nanotrack import NANOTRACK
from edgetrack.runtime.families.siamfc import SIAMFC
from edgetrack.runtime.families.siamrpn import SIAMRPN

LOG2, LOG3 = math.log(2.0), math.log(3.0)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def logits_of(*pairs) -> torch.Tensor:
    """One sample's (1, 2, N) logits from N (background, foreground) pairs."""
    return t(pairs).T.unsqueeze(0)


def ltrb(*boxes) -> torch.Tensor:
    """One sample's (1, 4, N) regression from N ltrb boxes."""
    return t(boxes).T.unsqueeze(0)


# ------------------------------------------------------------------------------------------- ground truth


def test_balanced_cross_entropy_by_hand():
    # Logits (0, 0) give -log 0.5 = log 2 on either label.
    assert balanced_cross_entropy(logits_of((0, 0), (0, 0)), t([[1, 0]])).item() == pytest.approx(0.5 * LOG2 + 0.5 * LOG2)
    # Target at (0, log 3): p = 3/4 -> log(4/3); two background locations at log 2 and log(1 + e); an ignored
    # location with a confident wrong answer does not count.
    logits = logits_of((0, LOG3), (0, 0), (0, 1), (-20, 20))
    expected = 0.5 * math.log(4 / 3) + 0.5 * (LOG2 + math.log(1 + math.e)) / 2
    assert balanced_cross_entropy(logits, t([[1, 0, 0, -1]])).item() == pytest.approx(expected, rel=1e-6)
    # No target location: half the background term, and a batch keeps its samples apart.
    both = torch.cat([logits, logits])
    got = balanced_cross_entropy(both, t([[1, 0, 0, -1], [0, 0, -1, -1]]))
    assert got.shape == (2,)
    # Sample 1: (0, log 3) and (0, 0) as background lose log 4 and log 2.
    assert got.tolist() == pytest.approx([expected, 0.5 * (math.log(4) + LOG2) / 2], rel=1e-6)


def test_iou_loss_by_hand():
    assert iou_loss(ltrb((3, 1, 2, 5)), ltrb((3, 1, 2, 5))).item() == pytest.approx(0.0, abs=1e-7)
    # 2 x 2 inside 4 x 4 at the same point: IoU 4 / 16.
    assert iou_loss(ltrb((1, 1, 1, 1)), ltrb((2, 2, 2, 2))).item() == pytest.approx(0.75)
    # A negative distance is clamped to 0: (0, 1, 1, 1) is 1 x 2, all inside -> IoU 2 / 16.
    assert iou_loss(ltrb((-1, 1, 1, 1)), ltrb((2, 2, 2, 2))).item() == pytest.approx(0.875)
    # Offset boxes: (3, 1, 1, 1) vs (1, 1, 3, 1): widths overlap 1 + 1, heights 2 -> inter 4, union 8 + 8 - 4.
    assert iou_loss(ltrb((3, 1, 1, 1)), ltrb((1, 1, 3, 1))).item() == pytest.approx(1 - 4 / 12)


def test_box_loss_nanotrack_averages_over_weighted_locations_only():
    pred = ltrb((2, 2, 2, 2), (1, 1, 1, 1), (float("nan"), 0, 0, 0))
    target = ltrb((2, 2, 2, 2), (2, 2, 2, 2), (5, 5, 5, 5))
    assert box_loss(NANOTRACK, pred, target, t([[1, 1, 0]])).item() == pytest.approx((0 + 0.75) / 2)
    assert box_loss(NANOTRACK, pred, target, t([[0, 1, 0]])).item() == pytest.approx(0.75)
    # No weighted location: 0, not a division by zero.
    assert box_loss(NANOTRACK, pred, target, t([[0, 0, 0]])).item() == 0


def test_box_loss_siamrpn_is_smooth_l1_summed_over_the_coordinates():
    target = ltrb((0.1, 0.2, 0.3, 0.4), (1, 1, 1, 1))
    # Differences 0.5 -> 0.5 * 0.5^2 = 0.125, 2 -> 2 - 0.5 = 1.5: location 0 sums 0.125 + 0.125 + 1.5 + 0.
    pred = target + ltrb((0.5, -0.5, 2, 0), (0, 0, 0, 0))
    assert box_loss(SIAMRPN, pred, target, t([[1, 1]])).item() == pytest.approx(1.75 / 2)
    assert box_loss(SIAMRPN, pred, target, t([[1, 0]])).item() == pytest.approx(1.75)


def test_box_loss_siamfc_is_zero():
    got = box_loss(SIAMFC, None, torch.zeros(3, 4, 5), torch.ones(3, 5))
    assert got.shape == (3,) and not got.any()


# ------------------------------------------------------------------------------------------ teacher terms


def test_soft_kl_by_hand():
    a = torch.randn(2, 2, 7, generator=torch.Generator().manual_seed(0))
    assert soft_kl(a, a.clone(), 2.0).abs().max().item() < 1e-6
    # Teacher (1/4, 3/4), student (1/2, 1/2): KL = 1/4 log(1/2) + 3/4 log(3/2).
    got = soft_kl(logits_of((0, 0)), logits_of((0, LOG3)), 1.0)
    assert got.item() == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), rel=1e-6)
    # torch's own KL as a second reference: KL(teacher || student) summed over the classes, averaged over locations.
    s, tt = torch.randn(2, 2, 7, generator=torch.Generator().manual_seed(1)), torch.randn(2, 2, 7, generator=torch.Generator().manual_seed(2))
    reference = F.kl_div(F.log_softmax(s, 1), F.log_softmax(tt, 1), reduction="none", log_target=True).sum(1).mean(1)
    torch.testing.assert_close(soft_kl(s, tt, 1.0), reference)
    # Temperature T: T^2 times the KL of the logits divided by T.
    torch.testing.assert_close(soft_kl(s, tt, 2.0), 4 * soft_kl(s / 2, tt / 2, 1.0))


def test_attention_map_by_hand_and_its_invariances():
    # One channel, values 3 and 4: squares 9 and 16, normalised by sqrt(81 + 256).
    got = attention_map(t([[[[3, 4]]]]))
    torch.testing.assert_close(got, t([[9, 16]]) / math.sqrt(337))
    f = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    # Mean over channels, not sum: the teacher's channels twice give the same map; so does a positive scale.
    torch.testing.assert_close(attention_map(torch.cat([f, f], 1)), attention_map(f))
    torch.testing.assert_close(attention_map(3.0 * f), attention_map(f))
    assert attention_map(f).shape == (2, 20)
    torch.testing.assert_close(attention_map(f).norm(dim=1), torch.ones(2))


def test_response_loss():
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    # A student of a different width with the same responses loses nothing.
    assert response_loss((torch.cat([z, z], 1), 2 * x), (z, x)).abs().max().item() < 1e-6
    assert (response_loss((z, x.flip(3)), (z, x)) > 0).all()
    # Search maps (1, 0) against (0, 1): distance sqrt(2); templates equal.
    same = t([[[[1.0, 1.0]]]])
    got = response_loss((same, t([[[[1.0, 0.0]]]])), (same, t([[[[0.0, 1.0]]]])))
    assert got.item() == pytest.approx(math.sqrt(2))


# ----------------------------------------------------------------------------------------------- outputs


def test_flat_outputs_siamfc_is_a_two_way_softmax_of_the_sigmoid():
    score = t([[[[-2.0, 0.0], [0.5, 3.0]]]])  # (B=1, 1, 2, 2)
    logits, loc = flat_outputs(SIAMFC, {"score": score})
    assert loc is None and logits.shape == (1, 2, 4)
    torch.testing.assert_close(logits.softmax(1)[:, 1], torch.sigmoid(score.flatten(1)))
    np.testing.assert_allclose(geo.two_way_softmax(logits[0].numpy()), torch.sigmoid(score.flatten()).numpy(), rtol=1e-6)


@pytest.mark.parametrize("anchors", [1, 5])
def test_flat_outputs_follow_the_trackers_flattening(anchors):
    batch, size = 2, 3
    cls = torch.arange(batch * 2 * anchors * size * size, dtype=torch.float32).reshape(batch, 2 * anchors, size, size)
    loc = -torch.arange(batch * 4 * anchors * size * size, dtype=torch.float32).reshape(batch, 4 * anchors, size, size)
    logits, flat_loc = flat_outputs(SIAMRPN if anchors > 1 else NANOTRACK, {"cls": cls, "loc": loc})
    assert logits.shape == (batch, 2, anchors * size * size) and flat_loc.shape == (batch, 4, anchors * size * size)
    for b in range(batch):
        # runtime/tracker.py: outputs["cls"].reshape(2, -1) and outputs["loc"].reshape(4, -1), one sample at a time.
        np.testing.assert_array_equal(logits[b].numpy(), cls[b].numpy().reshape(2, -1))
        np.testing.assert_array_equal(flat_loc[b].numpy(), loc[b].numpy().reshape(4, -1))
    # Foreground of anchor k at row i, column j is channel K + k, location k*S*S + i*S + j (anchor-major, as
    # geometry.anchor_grid); its regression coordinate c is channel c*K + k.
    k, i, j = anchors - 1, 2, 1
    n = k * size * size + i * size + j
    assert logits[1, 1, n] == cls[1, anchors + k, i, j]
    assert logits[1, 0, n] == cls[1, k, i, j]
    assert flat_loc[1, 3, n] == loc[1, 3 * anchors + k, i, j]


# ---------------------------------------------------------------------------------------- student losses


def outputs(logits, loc, seed=0, requires_grad=False) -> ModelOutputs:
    g = torch.Generator().manual_seed(seed)
    features = (torch.randn(logits.shape[0], 2, 3, 3, generator=g), torch.randn(logits.shape[0], 2, 5, 5, generator=g))
    if requires_grad:
        logits, loc = logits.clone().requires_grad_(), None if loc is None else loc.clone().requires_grad_()
    return ModelOutputs(logits, loc, features)


def batch_of(b: int, n: int) -> Batch:
    return Batch(torch.zeros(b, n), torch.zeros(b, 4, n), torch.ones(b, n), torch.ones(b))


def test_ground_truth_losses_are_zero_where_no_box_is_trusted():
    out = outputs(torch.cat([logits_of((0, 0), (0, LOG3))] * 2), torch.cat([ltrb((1, 1, 1, 1), (2, 2, 2, 2))] * 2))
    batch = Batch(t([[1, 0], [1, 0]]), torch.cat([ltrb((2, 2, 2, 2), (2, 2, 2, 2))] * 2), t([[1, 0], [1, 0]]), t([1, 0]))
    cls, loc = ground_truth_losses(NANOTRACK, out, batch)
    # Sample 0: target log 2 and background -log(1/4) = log 4; the box at location 0 loses 0.75.
    assert cls.tolist() == pytest.approx([0.5 * LOG2 + 0.5 * math.log(4), 0])
    assert loc.tolist() == pytest.approx([0.75, 0])


def test_alone_has_only_the_ground_truth_terms():
    me = outputs(torch.zeros(2, 2, 3), torch.ones(2, 4, 3))
    other, teacher = outputs(torch.ones(2, 2, 3), torch.ones(2, 4, 3), 1), outputs(torch.ones(2, 2, 3), torch.ones(2, 4, 3), 2)
    ground_truth = [(t([1.0, 2.0]), t([0.5, 0.25])), (t([0.1, 0.1]), t([0.0, 0.0]))]
    terms = student_losses(
        NANOTRACK, LOSS_PRESETS["alone"], 0, 0, [me, other], ground_truth, batch_of(2, 3), teacher, t([0.0, 0.0])
    )
    assert set(terms) == {"gt_cls", "gt_loc", "total"}
    assert terms["gt_cls"].item() == pytest.approx(1.5) and terms["gt_loc"].item() == pytest.approx(0.375)
    assert terms["total"].item() == pytest.approx(1.875)


def test_hard_term_counts_only_samples_worse_than_the_teacher_by_the_margin():
    config = LossConfig(soft=0.0, response=0.0, share=0.0, hard=2.0, hard_margin=0.1)
    me = outputs(torch.zeros(3, 2, 4), torch.ones(3, 4, 4))
    # Sample 0 is worse than the teacher by 0.2, sample 1 better, sample 2 worse by 0.05 (within the margin).
    ground_truth = [(t([0.0, 0.0, 0.0]), t([0.5, 0.2, 0.35]))]
    terms = student_losses(NANOTRACK, config, 0, 0, [me], ground_truth, batch_of(3, 4), outputs(torch.zeros(3, 2, 4), None), t([0.3, 0.4, 0.3]))
    assert set(terms) == {"gt_cls", "gt_loc", "hard", "total"}
    assert terms["hard"].item() == pytest.approx(2.0 * 0.5 / 3)
    assert terms["total"].item() == pytest.approx(terms["gt_loc"].item() + 2.0 * 0.5 / 3)
    # siamfc regresses nothing, so it has no hard term.
    fc = outputs(torch.zeros(3, 2, 4), None)
    terms = student_losses(SIAMFC, config, 0, 0, [fc], [(t([0.0, 0.0, 0.0]), t([0.0, 0.0, 0.0]))], batch_of(3, 4), fc, t([0.0, 0.0, 0.0]))
    assert "hard" not in terms


def test_dense_box_weights_each_location_by_the_teachers_foreground_probability():
    # Teacher foreground probabilities 3/4 (logits 0, log 3) and 1/2; the student's boxes lose 0.75 and 0 there.
    teacher = outputs(logits_of((0, LOG3), (0, 0)), ltrb((2, 2, 2, 2), (1, 1, 1, 1)))
    me = outputs(logits_of((5, 0), (5, 0)), ltrb((1, 1, 1, 1), (1, 1, 1, 1)))
    assert dense_box_loss(NANOTRACK, me, teacher).item() == pytest.approx(0.75 * 0.75 / (0.75 + 0.5))
    assert dense_box_loss(NANOTRACK, teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_dense_box_log_is_the_mean_side_log_ratio_weighted_by_the_teachers_foreground_probability():
    # The same teacher as above; the student's sides are half the teacher's at location 0 (|log 1/2| on each side)
    # and equal at location 1.
    teacher = outputs(logits_of((0, LOG3), (0, 0)), ltrb((2, 2, 2, 2), (1, 1, 1, 1)))
    me = outputs(logits_of((5, 0), (5, 0)), ltrb((1, 1, 1, 1), (1, 1, 1, 1)))
    assert dense_box_log_loss(me, teacher).item() == pytest.approx(LOG2 * 0.75 / (0.75 + 0.5))
    # One side three times too long, one a third too short: the mean of |log 3| twice and 0 twice.
    lopsided = outputs(logits_of((5, 0), (5, 0)), ltrb((6, 2, 2, 2 / 3), (1, 1, 1, 1)))
    assert dense_box_log_loss(lopsided, teacher).item() == pytest.approx(0.5 * LOG3 * 0.75 / 1.25)
    assert dense_box_log_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_dense_box_log_keeps_pulling_a_box_far_too_small_where_one_minus_iou_flattens():
    # A student box 1/200 of the teacher's sides: 1 - IoU = 1 - (0.01/2)^2 is nearly flat there, the log ratio is not.
    teacher = outputs(logits_of((0, 50)), ltrb((2, 2, 2, 2)))
    small = outputs(logits_of((0, 0)), ltrb((0.01, 0.01, 0.01, 0.01)), requires_grad=True)
    dense_box_loss(NANOTRACK, small, teacher).backward()
    iou_pull = small.loc.grad.abs().max().item()
    small.loc.grad = None
    dense_box_log_loss(small, teacher).backward()
    log_pull = small.loc.grad.abs().min().item()
    assert iou_pull < 0.01 and log_pull == pytest.approx(0.25 / 0.01, rel=1e-3)
    # Downhill is larger: every side's gradient is negative.
    assert (small.loc.grad < 0).all()


def test_dense_box_log_is_its_own_weighted_term():
    teacher = outputs(logits_of((0, LOG3), (0, 0)), ltrb((2, 2, 2, 2), (1, 1, 1, 1)), 1)
    me = outputs(logits_of((5, 0), (5, 0)), ltrb((1, 1, 1, 1), (1, 1, 1, 1)))
    config = LossConfig(gt_cls=0.0, gt_loc=0.0, soft=0.0, hard=0.0, response=0.0, share=0.0, dense_box_log=2.0)
    assert config.uses_teacher
    ground_truth = [ground_truth_losses(NANOTRACK, me, batch_of(1, 2))]
    terms = student_losses(NANOTRACK, config, 0, 0, [me], ground_truth, batch_of(1, 2), teacher, t([0.0]))
    assert set(terms) == {"gt_cls", "gt_loc", "dense_box_log", "total"}
    assert terms["dense_box_log"].item() == pytest.approx(2.0 * LOG2 * 0.75 / 1.25)
    assert terms["total"].item() == pytest.approx(terms["dense_box_log"].item())


def test_teacher_only_learns_nothing_from_the_ground_truth():
    me = outputs(logits_of((0, 0), (0, 0)), ltrb((1, 1, 1, 1), (1, 1, 1, 1)), requires_grad=True)
    # The teacher sees the target at location 0 (probability 3/4) and not at location 1 (logits 50, 0).
    teacher = outputs(logits_of((0, LOG3), (50, 0)), ltrb((2, 2, 2, 2), (2, 2, 2, 2)), 1)
    ground_truth = [ground_truth_losses(NANOTRACK, me, batch_of(1, 2))]
    terms = student_losses(NANOTRACK, LOSS_PRESETS["teacher-only"], 0, 0, [me], ground_truth, batch_of(1, 2), teacher, t([0.0]))
    assert terms["gt_cls"].item() == 0 and terms["gt_loc"].item() == 0 and "hard" not in terms
    # 0.75 (IoU 4 / 16) weighted 3/4, over the weights' sum taken as at least 1 (as every box loss).
    assert terms["dense_box"].item() == pytest.approx(0.75 * 0.75)
    # The student's box is pulled toward the teacher's (larger) one at location 0, and not at location 1.
    terms["dense_box"].backward()
    assert (me.loc.grad[0, :, 0] < 0).all() and me.loc.grad[0, :, 1].abs().max() < 1e-12


def two_students(requires_grad=False):
    """Student 0: logits (0, 0), box (1,1,1,1); student 1: logits (0, log 3), box (2,2,2,2); two samples, one location."""
    s0 = outputs(torch.cat([logits_of((0, 0))] * 2), torch.cat([ltrb((1, 1, 1, 1))] * 2), 0, requires_grad)
    s1 = outputs(torch.cat([logits_of((0, LOG3))] * 2), torch.cat([ltrb((2, 2, 2, 2))] * 2), 1, requires_grad)
    return s0, s1


#: What student 0 learns from student 1 per sample at T = 1: KL((1/4, 3/4) || (1/2, 1/2)) plus IoU loss 0.75.
LEARNED = 0.25 * math.log(0.5) + 0.75 * math.log(1.5) + 0.75
SHARE = LossConfig(soft=0.0, hard=0.0, response=0.0, share=1.0, share_decay=0.5, temperature=1.0)


def test_share_goes_from_the_wiser_student_to_the_duller_one():
    s0, s1 = two_students()
    batch = batch_of(2, 1)
    # Student 1 has the lower ground-truth loss on both samples.
    ground_truth = [(t([1.0, 1.0]), t([0.5, 0.5])), (t([0.2, 0.3]), t([0.1, 0.1]))]
    duller = student_losses(NANOTRACK, SHARE, 0, 0, [s0, s1], ground_truth, batch, None, None)
    wiser = student_losses(NANOTRACK, SHARE, 0, 1, [s0, s1], ground_truth, batch, None, None)
    assert set(duller) == {"gt_cls", "gt_loc", "share", "total"}
    assert duller["share"].item() == pytest.approx(LEARNED, rel=1e-6)
    assert duller["total"].item() == pytest.approx(1.0 + 0.5 + LEARNED, rel=1e-6)
    assert wiser["share"].item() == 0
    # Only a strictly lower loss teaches: equals learn nothing from each other.
    tie = [(t([1.0, 1.0]), t([0.5, 0.5])), (t([1.0, 1.0]), t([0.5, 0.5]))]
    assert student_losses(NANOTRACK, SHARE, 0, 0, [s0, s1], tie, batch, None, None)["share"].item() == 0
    # Student 1 is wiser on sample 0 only: half the samples count.
    mixed = [(t([1.0, 0.1]), t([0.5, 0.0])), (t([0.2, 0.3]), t([0.1, 0.1]))]
    assert student_losses(NANOTRACK, SHARE, 0, 0, [s0, s1], mixed, batch, None, None)["share"].item() == pytest.approx(LEARNED / 2, rel=1e-6)
    # A margin between the two gaps (1.5 - 0.3 = 1.2 and 1.5 - 0.4 = 1.1) stops the sharing on sample 1 only.
    margin = LossConfig(soft=0.0, hard=0.0, response=0.0, share=1.0, share_margin=1.15, temperature=1.0)
    got = student_losses(NANOTRACK, margin, 0, 0, [s0, s1], ground_truth, batch, None, None)["share"]
    assert got.item() == pytest.approx(LEARNED / 2, rel=1e-6)


def test_share_weight_decays_over_epochs():
    s0, s1 = two_students()
    ground_truth = [(t([1.0, 1.0]), t([0.5, 0.5])), (t([0.2, 0.3]), t([0.1, 0.1]))]
    share = [student_losses(NANOTRACK, SHARE, epoch, 0, [s0, s1], ground_truth, batch_of(2, 1), None, None)["share"].item() for epoch in (0, 2)]
    assert share[1] == pytest.approx(share[0] / 4) and share[0] == pytest.approx(LEARNED, rel=1e-6)
    # One student alone, or a weight of zero, has no share term.
    assert "share" not in student_losses(NANOTRACK, SHARE, 0, 0, [s0], ground_truth[:1], batch_of(2, 1), None, None)
    assert "share" not in student_losses(NANOTRACK, LOSS_PRESETS["teacher-student"], 0, 0, [s0, s1], ground_truth, batch_of(2, 1), None, None)


def test_sharing_sends_no_gradient_into_the_other_student():
    s0, s1 = two_students(requires_grad=True)
    batch = Batch(t([[1], [1]]), torch.cat([ltrb((2, 2, 2, 2))] * 2), torch.ones(2, 1), torch.ones(2))
    ground_truth = [ground_truth_losses(NANOTRACK, s, batch) for s in (s0, s1)]
    assert (ground_truth[1][0] + ground_truth[1][1] < ground_truth[0][0] + ground_truth[0][1]).all()
    terms = student_losses(NANOTRACK, SHARE, 0, 0, [s0, s1], ground_truth, batch, None, None)
    assert terms["share"].item() > 0
    for name in ("share", "total"):
        grads = torch.autograd.grad(terms[name], [s0.logits, s0.loc, s1.logits, s1.loc], retain_graph=True, allow_unused=True)
        assert grads[2] is None and grads[3] is None, name
        assert grads[0] is not None and grads[0].abs().sum() > 0, name
        assert grads[1] is not None and grads[1].abs().sum() > 0, name


def test_the_command_line_offers_every_loss_preset():
    from edgetrack.cli.training import distill_command

    option = next(p for p in distill_command.params if p.name == "losses")
    assert set(option.type.choices) == set(LOSS_PRESETS)
