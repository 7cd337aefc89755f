"""The losses of teacher-students knowledge distillation (TSsKD, arXiv:1907.10586), per sample so that the
teacher-bounded and student-student terms can decide sample by sample.

Every family's outputs are first seen the same way: two-way logits ``(B, 2, N)`` and, where the family regresses,
a ``(B, 4, N)`` box in the tracker's flattening order (``reshape(2, -1)`` / ``reshape(4, -1)``). SiamFC's single
score is the foreground logit against a background of 0, which makes the two-way softmax its sigmoid.

- ground truth: balanced cross-entropy (half on the target, half on the background) and the family's box loss;
- teacher-student: a temperature-softened KL to the teacher's classification; the "adaptive hard" box loss, which
  counts only where the student is worse than the teacher by more than a margin; and the Siamese target response
  loss, which matches channel-aggregated, normalised feature maps of template and search;
- student-student: each student also learns another's soft outputs where that student's ground-truth loss is
  lower by a margin, with a weight that decays over epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgetrack.runtime.families.base import FamilySpec


@dataclass(frozen=True)
class LossConfig:
    """Weights of each term (0 switches it off), and the constants they use."""

    gt_cls: float = 1.0
    gt_loc: float = 1.0
    #: teacher-student: soft classification (KL at ``temperature``)
    soft: float = 1.0
    temperature: float = 2.0
    #: teacher-student: the adaptive hard box loss, counted where student - teacher > ``hard_margin``
    hard: float = 1.0
    hard_margin: float = 0.0
    #: teacher-student: dense box distillation, the student's box regressed onto the teacher's at every location,
    #: weighted by the teacher's foreground probability (needs no ground truth)
    dense_box: float = 0.0
    #: teacher-student: an L1 on the log ratio of the student's and the teacher's box sides at every location, with
    #: the same weighting (families whose boxes are ltrb distances only). 1 - IoU flattens for boxes far too small
    #: or too large, so a student that shrinks its boxes can stay stuck; the log ratio keeps its gradient there.
    dense_box_log: float = 0.0
    #: teacher-student: Siamese target response of the template and search feature maps
    response: float = 1.0
    #: student-student: learn another student's soft outputs where its ground-truth loss is lower by ``share_margin``.
    #: 0.5 and 0.1 were chosen on synthetic validation sequences (benchmarks/README.md), never on evaluation ones.
    share: float = 0.5
    share_margin: float = 0.1
    #: the sharing weight is ``share * share_decay ** epoch``
    share_decay: float = 0.5

    @property
    def uses_teacher(self) -> bool:
        return bool(self.soft or self.hard or self.response or self.dense_box or self.dense_box_log)


#: The arms of the ablation as loss settings: ground truth alone, with the teacher, full TSsKD, and the teacher alone.
LOSS_PRESETS = {
    "alone": LossConfig(soft=0.0, hard=0.0, response=0.0, share=0.0),
    "teacher-student": LossConfig(share=0.0),
    "tsskd": LossConfig(),
    # the teacher's outputs only: no ground-truth term at all, so the student learns the teacher's function and
    # nothing of the training labels
    "teacher-only": LossConfig(gt_cls=0.0, gt_loc=0.0, hard=0.0, dense_box=1.0, share=0.0),
}


@dataclass
class Batch:
    """One batch's targets, as tensors: ``label (B, N)`` int (1, 0, -1 ignored), ``loc (B, 4, N)``,
    ``loc_weight (B, N)``, and ``gt_weight (B,)`` (0 where no box is trusted: a teacher-labelled pair the teacher
    was unsure of)."""

    label: torch.Tensor
    loc: torch.Tensor
    loc_weight: torch.Tensor
    gt_weight: torch.Tensor


def flat_outputs(spec: FamilySpec, outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Two-way logits ``(B, 2, N)`` and the box regression ``(B, 4, N)`` (None where the family regresses none)."""
    cls = outputs[spec.cls_output]
    batch = cls.shape[0]
    if spec.single_logit:
        score = cls.flatten(1).unsqueeze(1)
        logits = torch.cat([torch.zeros_like(score), score], dim=1)
    else:
        logits = cls.reshape(batch, 2, -1)
    loc = None if spec.loc_output is None else outputs[spec.loc_output].reshape(batch, 4, -1)
    return logits, loc


def balanced_cross_entropy(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per sample: half the mean loss of target locations, half that of background ones (pysot's select_cross_entropy)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    losses = []
    for value in (1, 0):
        mask = (label == value).float()
        nll = -log_p[:, value] * mask
        losses.append(nll.sum(1) / mask.sum(1).clamp(min=1.0))
    return 0.5 * (losses[0] + losses[1])


def iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - IoU`` of two ltrb boxes at the same point, ``(B, 4, N) -> (B, N)`` (NanoTrack's linear IoU loss)."""
    pl, pt, pr, pb = pred.float().clamp(min=0).unbind(1)
    tl, tt, tr, tb = target.float().unbind(1)
    inter = (torch.min(pl, tl) + torch.min(pr, tr)) * (torch.min(pt, tt) + torch.min(pb, tb))
    union = (pl + pr) * (pt + pb) + (tl + tr) * (tt + tb) - inter
    return 1.0 - inter / union.clamp(min=1e-6)


def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth L1 summed over the four values, ``(B, 4, N) -> (B, N)`` (SiamRPN's loss on anchor deltas)."""
    return F.smooth_l1_loss(pred.float(), target.float(), reduction="none").sum(1)


#: The box losses per location, by the name a family's spec gives (``FamilySpec.box_loss``).
BOX_LOSSES = {"iou": iou_loss, "smooth-l1": smooth_l1_loss}


def box_loss(spec: FamilySpec, pred: torch.Tensor | None, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per sample, the family's box loss averaged over the weighted locations; 0 where it regresses no box."""
    if pred is None:
        return weight.new_zeros(weight.shape[0])
    per_location = torch.nan_to_num(BOX_LOSSES[spec.box_loss](pred, target)) * weight
    return per_location.sum(1) / weight.sum(1).clamp(min=1.0)


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per sample, ``T^2 * KL(teacher_T || student_T)`` averaged over locations."""
    log_s = F.log_softmax(student.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(1).mean(1) * temperature**2


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Channel-aggregated response ``mean_c F_c^2``, flattened and L2-normalised: comparable across widths."""
    response = features.float().pow(2).mean(1).flatten(1)
    return F.normalize(response, dim=1)


def response_loss(student: tuple[torch.Tensor, torch.Tensor], teacher: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per sample, the L2 distances between student and teacher responses, template plus search."""
    return sum((attention_map(s) - attention_map(t)).norm(dim=1) for s, t in zip(student, teacher))


@dataclass
class ModelOutputs:
    """A forward pass seen by the losses: flattened logits and box, and the embedded template and search."""

    logits: torch.Tensor
    loc: torch.Tensor | None
    features: tuple[torch.Tensor, torch.Tensor]

    @classmethod
    def of(cls, spec: FamilySpec, outputs: dict[str, torch.Tensor], z: torch.Tensor, x: torch.Tensor) -> ModelOutputs:
        """A ``TrainingView``'s forward (``outputs``, embedded template ``z`` and search ``x``) for the losses."""
        logits, loc = flat_outputs(spec, outputs)
        return cls(logits, loc, (z, x))


def foreground_probability(outputs: ModelOutputs) -> torch.Tensor:
    """``(B, N)``: the probability of the target at each location, the weight of the dense box terms."""
    return F.softmax(outputs.logits.float(), dim=1)[:, 1]


def dense_box_loss(spec: FamilySpec, student: ModelOutputs, teacher: ModelOutputs) -> torch.Tensor:
    """Per sample, the family's box loss of the student's box against the teacher's at every location, weighted by
    the teacher's foreground probability."""
    return box_loss(spec, student.loc, teacher.loc, foreground_probability(teacher))


def dense_box_log_loss(student: ModelOutputs, teacher: ModelOutputs) -> torch.Tensor:
    """Per sample, ``mean |log(student side / teacher side)|`` over the four ltrb sides, averaged over locations
    weighted by the teacher's foreground probability. Sides are clamped at 1e-6 first (a side below it is wrong
    by the same log ratio however negative it is)."""
    weight = foreground_probability(teacher)
    sides = (student.loc.float().clamp(min=1e-6).log() - teacher.loc.float().clamp(min=1e-6).log()).abs().mean(1)
    return (torch.nan_to_num(sides) * weight).sum(1) / weight.sum(1).clamp(min=1e-6)


def ground_truth_losses(spec: FamilySpec, out: ModelOutputs, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample cls and box losses against the targets, zero where ``gt_weight`` is."""
    cls = balanced_cross_entropy(out.logits, batch.label) * batch.gt_weight
    loc = box_loss(spec, out.loc, batch.loc, batch.loc_weight) * batch.gt_weight
    return cls, loc


def student_losses(
    spec: FamilySpec,
    config: LossConfig,
    epoch: int,
    index: int,
    students: list[ModelOutputs],
    ground_truth: list[tuple[torch.Tensor, torch.Tensor]],
    batch: Batch,
    teacher: ModelOutputs | None,
    teacher_loc: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Every enabled term of student ``index``'s loss, already weighted, plus ``total``.

    ``ground_truth[i]`` is student ``i``'s ``ground_truth_losses``; ``teacher_loc`` is the teacher's per-sample
    box loss on the same targets (the bound of the adaptive hard loss).
    """
    me = students[index]
    cls, loc = ground_truth[index]
    terms = {"gt_cls": config.gt_cls * cls.mean(), "gt_loc": config.gt_loc * loc.mean()}
    if teacher is not None:
        if config.soft:
            terms["soft"] = config.soft * soft_kl(me.logits, teacher.logits, config.temperature).mean()
        if config.hard and me.loc is not None:
            worse = (loc.detach() > teacher_loc + config.hard_margin).float()
            terms["hard"] = config.hard * (loc * worse).mean()
        if config.dense_box and me.loc is not None:
            terms["dense_box"] = config.dense_box * dense_box_loss(spec, me, teacher).mean()
        if config.dense_box_log and me.loc is not None:
            terms["dense_box_log"] = config.dense_box_log * dense_box_log_loss(me, teacher).mean()
        if config.response:
            terms["response"] = config.response * response_loss(me.features, teacher.features).mean()
    share_weight = config.share * config.share_decay**epoch
    if share_weight and len(students) > 1:
        mine = (cls + loc).detach()
        shared = []
        for other_index, other in enumerate(students):
            if other_index == index:
                continue
            other_cls, other_loc = ground_truth[other_index]
            wiser = ((other_cls + other_loc).detach() + config.share_margin < mine).float()
            learned = soft_kl(me.logits, other.logits.detach(), config.temperature)
            if me.loc is not None:
                learned = learned + box_loss(spec, me.loc, other.loc.detach(), batch.loc_weight)
            shared.append((learned * wiser).mean())
        terms["share"] = share_weight * torch.stack(shared).mean()
    terms["total"] = torch.stack(list(terms.values())).sum()
    return terms
