"""Make a student of any widths from a teacher of the same family, keeping the teacher's strongest channels.

For every width group the channels are ranked by the L1 norm of the filters that produce them (the tensors
whose first dimension is that group); the top ones are kept in their original order, and every tensor of the
teacher is sliced along each dimension that belongs to a group. The family only describes its tensors
(``SiameseModel.channel_groups``): this file knows nothing of any architecture.

Slicing alone leaves every layer that read a pruned channel short of its input. ``refit`` then solves each such
layer (1x1 convolutions and fully connected layers), in forward order, by least squares so that it reproduces its
parent's output from the inputs the student really gives it (the channel-pruning reconstruction of He et al.,
2017, and ThiNet).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

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


def shrink(
    teacher: SiameseModel, widths: dict[str, int], name: str | None = None, options: dict[str, object] | None = None
) -> SiameseModel:
    """A student with ``widths`` (groups left out keep the teacher's width) and the teacher's kept weights.

    ``options`` are family switches the student sets on top of the teacher's (NanoTrack's ``template_front``); a
    layer they add that the teacher lacks copies, whole, the teacher's layer its key names (``inherited_key``)."""
    config = teacher.config.with_widths(widths, name=name or f"{teacher.config.name}-shrunk")
    # A student shrunk from a student (progressive shrinking) keeps the zoo teacher it descends from.
    config = dataclasses.replace(
        config, teacher=teacher.config.teacher or teacher.config.name, options={**config.options, **(options or {})}
    )
    student = type(teacher)(config)
    kept = kept_channels(teacher, widths)
    groups = teacher.channel_groups()
    source = teacher.state_dict()
    sliced = {}
    for key in student.state_dict():
        if key in source:
            tensor = source[key]
            for d, group in enumerate(groups[key]):
                if group is not None:
                    tensor = tensor.index_select(d, kept[group])
        else:
            inherited = student.inherited_key(key)
            if inherited not in source:
                raise ValueError(f"{config.name}'s {key} has no counterpart in {teacher.config.name} to start from")
            tensor = source[inherited]
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


@dataclass(frozen=True)
class RefitLayer:
    """One refitted layer: how many of its parent's inputs it keeps, and its squared error against the parent's
    output relative to that output's variance, with the sliced weights and with the refitted ones."""

    name: str
    inputs: int
    parent_inputs: int
    error_before: float
    error_after: float


class _Moments:
    """Running sums of a layer's inputs ``x`` (the student's) and targets ``y`` (its parent's outputs)."""

    def __init__(self):
        self.n, self.sx, self.sy, self.sxx, self.sxy, self.syy = 0, 0.0, 0.0, 0.0, 0.0, 0.0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = _rows(x), _rows(y)
        self.n += x.shape[0]
        self.sx, self.sy = self.sx + x.sum(0), self.sy + y.sum(0)
        self.sxx, self.sxy = self.sxx + x.T @ x, self.sxy + x.T @ y
        self.syy = self.syy + y.pow(2).sum()

    def error(self, weight: torch.Tensor, bias: torch.Tensor) -> float:
        """Mean squared error of ``x @ weight + bias`` against ``y``, relative to the variance of ``y``."""
        n, mx, my = self.n, self.sx / self.n, self.sy / self.n
        sse = (weight * (self.sxx @ weight)).sum() / n + 2 * (mx @ weight) @ bias + bias @ bias
        sse = sse - 2 * (weight * self.sxy).sum() / n - 2 * bias @ my + self.syy / n
        return float(sse / (self.syy / n - my @ my).clamp(min=1e-12))


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) or (N, C) activations as rows of C features, in float64."""
    return (t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]) if t.dim() == 4 else t).detach().double()


def _refittable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1 and module.kernel_size == (1, 1))


def refit(
    parent: SiameseModel,
    student: SiameseModel,
    batches: Iterable,
    forward: Callable[[SiameseModel, object], object],
    ridge: float = 1e-3,
) -> list[RefitLayer]:
    """Refit, in forward order, every 1x1 convolution and fully connected layer of ``student`` (shrunk from
    ``parent``) that reads fewer channels than its parent's: its weights become the ridge least-squares map from the
    inputs the student gives it to the parent's outputs of the channels the student keeps, over
    ``forward(model, batch)`` on each of ``batches`` (both models in eval mode). A layer with a bias fits an
    intercept; one without fits through the origin. ``ridge`` scales the mean input variance added to the
    diagonal. A layer is left as sliced where no forward reaches it, or where the fit is no better on ``batches``."""
    batches = list(batches)
    kept = kept_channels(parent, student.config.widths)
    groups = parent.channel_groups()
    parents = dict(parent.named_modules())
    done = []
    for name, layer in student.named_modules():
        # a layer the parent lacks was copied whole (``shrink``'s ``inherited_key``): it lost no input
        if not _refittable(layer) or name not in parents or layer.weight.shape[1] == parents[name].weight.shape[1]:
            continue
        out_group = groups[f"{name}.weight"][0]
        rows = kept[out_group] if out_group is not None else torch.arange(layer.weight.shape[0])
        moments = _moments(parent, student, parents[name], layer, rows, batches, forward)
        if moments.n:
            done.append(_solve(name, layer, parents[name], moments, rows, ridge))
    return done


def _moments(parent, student, parent_layer, layer, rows, batches, forward) -> _Moments:
    """The moments of ``layer``'s inputs in ``student`` and ``parent_layer``'s outputs (channels ``rows``) in
    ``parent``, call by call (a backbone layer runs once for the template and once for the search image)."""
    moments, calls = _Moments(), None
    with torch.no_grad():
        for batch in batches:
            targets = _at_each_call(parent, parent_layer, lambda _args, out: out[:, rows], forward, batch, calls)
            inputs = _at_each_call(student, layer, lambda args, _out: args[0], forward, batch, calls)
            calls = len(inputs)
            for x, y in zip(inputs, targets, strict=True):
                moments.add(x, y)
    return moments


class _LastCall(Exception):
    """Ends a forward once the layer being refitted has run for the last time in it."""


def _at_each_call(model, module, take, forward, batch, calls: int | None) -> list:
    """``take(args, output)`` at each call of ``module`` in ``forward(model, batch)``. Given how many ``calls``
    there are (the first batch counts them), the forward stops right after the last one, since the layers after
    it cannot change what was taken (the same weights, 13% less time for a student of NanoTrack v2)."""
    taken = []

    def hook(_module, args, output):
        taken.append(take(args, output))
        if len(taken) == calls:
            raise _LastCall

    handle = module.register_forward_hook(hook)
    try:
        forward(model, batch)
    except _LastCall:
        pass
    finally:
        handle.remove()
    return taken


def _solve(name: str, layer: nn.Module, parent_layer: nn.Module, m: _Moments, rows: torch.Tensor, ridge: float) -> RefitLayer:
    """Set ``layer``'s weights (and bias) to the ridge least-squares solution of ``m``; its record."""
    n, mx, my = m.n, m.sx / m.n, m.sy / m.n
    inputs, parent_inputs = layer.weight.shape[1], parent_layer.weight.shape[1]
    sliced = layer.weight.detach().double().reshape(layer.weight.shape[0], -1).T
    zero = torch.zeros_like(my)
    old_bias = parent_layer.bias.detach().double()[rows] if layer.bias is not None else zero
    before = m.error(sliced, old_bias)
    if layer.bias is not None:
        cxx, cxy = m.sxx / n - torch.outer(mx, mx), m.sxy / n - torch.outer(mx, my)
    else:
        cxx, cxy = m.sxx / n, m.sxy / n
    damping = ridge * torch.diagonal(cxx).mean().clamp(min=1e-12)
    weight = torch.linalg.solve(cxx + damping * torch.eye(cxx.shape[0], dtype=cxx.dtype), cxy)
    bias = my - mx @ weight if layer.bias is not None else zero
    after = m.error(weight, bias)
    if after >= before:  # the damping can cost more than a near-perfect slice loses: keep the slice
        return RefitLayer(name, inputs, parent_inputs, before, before)
    with torch.no_grad():
        layer.weight.copy_(weight.T.reshape(layer.weight.shape))
        if layer.bias is not None:
            layer.bias.copy_(bias)
    return RefitLayer(name, inputs, parent_inputs, before, after)
