"""Make a student of any widths from a teacher of the same family, keeping the teacher's strongest channels.

For every width group the channels are ranked by the L1 norm of the filters that produce them (the tensors
whose first dimension is that group); the top ones are kept in their original order, and every tensor of the
teacher is sliced along each dimension that belongs to a group. The family only describes its tensors
(``SiameseModel.channel_groups``): this file knows nothing of any architecture.
"""

from __future__ import annotations

import dataclasses

import torch

from .models.base import CHANNEL_MULTIPLE, SiameseModel


def channel_importance(model: SiameseModel) -> dict[str, torch.Tensor]:
    """L1 norm of each channel's producing filters, per width group.

    A group that no filter produces (it only feeds others) is ranked by the weights that read it instead.
    """
    groups = model.channel_groups()
    state = model.state_dict()
    produced: dict[str, torch.Tensor] = {}
    consumed: dict[str, torch.Tensor] = {}
    for key, dims in groups.items():
        tensor = state[key]
        if tensor.dim() < 2 or not tensor.is_floating_point():
            continue
        for d, group in enumerate(dims):
            if group is None:
                continue
            others = [i for i in range(tensor.dim()) if i != d]
            norms = tensor.detach().abs().sum(dim=others).double()
            target = produced if d == 0 else consumed
            target[group] = target.get(group, 0) + norms
    return {g: produced.get(g, consumed.get(g)) for g in model.config.widths if g in produced or g in consumed}


def kept_channels(teacher: SiameseModel, widths: dict[str, int]) -> dict[str, torch.Tensor]:
    """The indices each group keeps: the highest-importance channels, in the teacher's order."""
    importance = channel_importance(teacher)
    kept = {}
    for group, have in teacher.config.widths.items():
        want = int(widths.get(group, have))
        if want > have:
            raise ValueError(f"cannot widen {group} from {have} to {want} channels: a student is at most its teacher")
        if want == have or group not in importance:
            kept[group] = torch.arange(have)
        else:
            kept[group] = torch.topk(importance[group], want).indices.sort().values
    return kept


def shrink(teacher: SiameseModel, widths: dict[str, int], name: str | None = None) -> SiameseModel:
    """A student with ``widths`` (groups left out keep the teacher's width) and the teacher's kept weights."""
    config = teacher.config.with_widths(widths, name=name or f"{teacher.config.name}-shrunk")
    # A student shrunk from a student (progressive shrinking) keeps the zoo teacher it descends from.
    config = dataclasses.replace(config, teacher=teacher.config.teacher or teacher.config.name)
    student = type(teacher)(config)
    kept = kept_channels(teacher, widths)
    groups = teacher.channel_groups()
    sliced = {}
    for key, tensor in teacher.state_dict().items():
        for d, group in enumerate(groups[key]):
            if group is not None:
                tensor = tensor.index_select(d, kept[group])
        sliced[key] = tensor.clone()
    student.load_state_dict(sliced, strict=True)
    return student.train(teacher.training)


def widen(model: SiameseModel, widths: dict[str, int], name: str | None = None) -> SiameseModel:
    """The same function at wider ``widths``: every added channel has zero weights in and out (and a BatchNorm of
    mean 0, variance 1 and zero affine terms), so it stays zero and the outputs do not change. It aligns a trained
    model's widths to ``CHANNEL_MULTIPLE`` (``aligned_widths``) for the fast kernels of ONNX Runtime and TensorRT."""
    narrower = {g: w for g, w in widths.items() if w < model.config.widths.get(g, w)}
    if narrower:
        raise ValueError(f"widen cannot narrow {sorted(narrower)}: use shrink")
    wide = type(model)(dataclasses.replace(model.config.with_widths(widths), name=name or model.config.name))
    groups = model.channel_groups()
    target = wide.state_dict()
    state = {}
    for key, tensor in model.state_dict().items():
        grown = torch.ones_like(target[key]) if key.endswith("running_var") else torch.zeros_like(target[key])
        grown[tuple(slice(0, size) for size in tensor.shape)] = tensor
        if not groups[key] and tensor.shape != grown.shape:
            raise ValueError(f"{key} changes shape but belongs to no width group")
        state[key] = grown
    wide.load_state_dict(state, strict=True)
    return wide.train(model.training)


def aligned_widths(widths: dict[str, int], multiple: int = CHANNEL_MULTIPLE) -> dict[str, int]:
    """Every width above one rounded up to a multiple of ``multiple`` (one-channel placeholders stay)."""
    return {g: w if w <= 1 else -(-w // multiple) * multiple for g, w in widths.items()}
