"""Shrinking keeps the teacher's strongest channels, gives exactly the widths asked for, and is the identity at
the teacher's own widths: on a hand-checkable toy model here, and on every zoo teacher in test_zoo.py."""

from __future__ import annotations

import pytest

# The torch floor needs torch; the Python 3.10 run of `make test-py310` has none (its CPU wheel is for 3.11).
pytest.importorskip("torch", reason="torch is not installed in this environment")

import torch
from torch import nn

from edgetrack.distill.models.base import ModelConfig, SiameseModel
from edgetrack.distill.shrink import aligned_widths, channel_importance, refit, shrink, widen
from edgetrack.runtime.bundle import Geometry, Hyper


class Toy(SiameseModel):
    """conv(3 -> a) + BN + ReLU, conv(a -> b): the smallest model with a width feeding another."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        a, b = config.widths["a"], config.widths["b"]
        self.conv1 = nn.Conv2d(3, a, 3)
        self.bn1 = nn.BatchNorm2d(a)
        self.conv2 = nn.Conv2d(a, b, 3, bias=False)

    def embed(self, image):
        return self.conv2(torch.relu(self.bn1(self.conv1(image))))

    def head(self, xfeat, zf):
        return {"score": nn.functional.conv2d(xfeat, zf)}

    def channel_groups(self):
        return {
            "conv1.weight": ("a", None, None, None),
            "conv1.bias": ("a",),
            "bn1.weight": ("a",),
            "bn1.bias": ("a",),
            "bn1.running_mean": ("a",),
            "bn1.running_var": ("a",),
            "bn1.num_batches_tracked": (),
            "conv2.weight": ("b", "a", None, None),
        }


CONFIG = ModelConfig(
    name="toy",
    family="siamfc",
    widths={"a": 6, "b": 4},
    geometry=Geometry(exemplar_size=15, instance_size=31, stride=1, score_size=17),
    hyper=Hyper(penalty_k=0.0, window_influence=0.2, lr=0.5, lost_threshold=0.5),
)


@pytest.fixture
def teacher():
    torch.manual_seed(0)
    model = Toy(CONFIG).eval()
    with torch.no_grad():
        # channel i of conv1 gets filters of norm proportional to these factors: 4, 1, 5 are the strongest three
        for i, factor in enumerate([4.0, 0.5, 1.0, 0.1, 5.0, 0.2]):
            model.conv1.weight[i] = factor * torch.sign(torch.randn_like(model.conv1.weight[i]))
        model.bn1.running_mean.uniform_(-1, 1)
        model.bn1.running_var.uniform_(0.5, 2)
    return model


def test_importance_is_the_l1_norm_of_the_producing_filters(teacher):
    importance = channel_importance(teacher)
    expected = teacher.conv1.weight.abs().sum(dim=(1, 2, 3)).double()
    torch.testing.assert_close(importance["a"], expected)
    torch.testing.assert_close(importance["b"], teacher.conv2.weight.abs().sum(dim=(1, 2, 3)).double())


def test_kept_channels_are_the_highest_norm_ones(teacher):
    student = shrink(teacher, {"a": 3})
    kept = [0, 2, 4]  # factors 4, 1, 5: the three largest, in the teacher's order
    torch.testing.assert_close(student.conv1.weight, teacher.conv1.weight[kept])
    torch.testing.assert_close(student.conv1.bias, teacher.conv1.bias[kept])
    torch.testing.assert_close(student.bn1.running_var, teacher.bn1.running_var[kept])
    # the next layer reads only the kept channels
    torch.testing.assert_close(student.conv2.weight, teacher.conv2.weight[:, kept])


def test_shrunk_model_is_exactly_the_width_asked_for(teacher):
    student = shrink(teacher, {"a": 2, "b": 3}, name="toy-s")
    assert student.config.widths == {"a": 2, "b": 3}
    assert student.config.name == "toy-s" and student.config.teacher == "toy"
    assert student.conv1.weight.shape == (2, 3, 3, 3) and student.conv2.weight.shape == (3, 2, 3, 3)
    assert student.bn1.running_mean.shape == (2,)
    z, x = torch.rand(1, 3, 15, 15), torch.rand(1, 3, 31, 31)
    assert student(z, x)["score"].shape == (1, 1, 17, 17)


def test_own_width_reproduces_the_teacher(teacher):
    student = shrink(teacher, dict(CONFIG.widths))
    z, x = torch.rand(2, 3, 15, 15), torch.rand(2, 3, 31, 31)
    with torch.no_grad():
        assert torch.equal(student.template(z), teacher.template(z))
        assert torch.equal(student(z[:1], x[:1])["score"], teacher(z[:1], x[:1])["score"])


def test_bad_widths_are_refused(teacher):
    with pytest.raises(ValueError, match="cannot widen a from 6 to 7"):
        shrink(teacher, {"a": 7})
    with pytest.raises(ValueError, match="no width groups"):
        shrink(teacher, {"c": 2})
    with pytest.raises(ValueError, match="at least 1"):
        shrink(teacher, {"a": 0})


def test_widening_adds_zero_channels_that_leave_the_outputs_unchanged(teacher):
    with torch.no_grad():
        teacher.bn1.bias.uniform_(-1, 1)  # a trained BatchNorm: the added channels must not pick up its offsets
    wide = widen(teacher, {"a": 8, "b": 8})
    assert wide.config.widths == {"a": 8, "b": 8} and wide.conv1.weight.shape == (8, 3, 3, 3)
    torch.testing.assert_close(wide.conv1.weight[:6], teacher.conv1.weight)
    assert wide.conv1.weight[6:].abs().sum() == 0 and wide.conv2.weight[:, 6:].abs().sum() == 0
    assert wide.bn1.running_var[6:].tolist() == [1.0, 1.0]
    torch.manual_seed(1)
    z, x = torch.rand(1, 3, 15, 15), torch.rand(1, 3, 31, 31)
    with torch.no_grad():
        torch.testing.assert_close(wide.track(x, wide.template(z))["score"], teacher.track(x, teacher.template(z))["score"])
    with pytest.raises(ValueError, match="cannot narrow"):
        widen(teacher, {"a": 4})


def test_aligned_widths_round_up_to_multiples_of_eight():
    assert aligned_widths({"stem": 12, "se": 3, "expand": 54, "stage": 48, "neck": 1}) == {"stem": 16, "se": 8, "expand": 56, "stage": 48, "neck": 1}


class Linear(Toy):
    """1x1 conv(3 -> a), 1x1 conv(a -> b) with a bias and no nonlinearity: a pruned channel of ``a`` that is a
    linear combination of kept ones is exactly recoverable by the next layer."""

    def __init__(self, config: ModelConfig):
        SiameseModel.__init__(self, config)
        self.conv1 = nn.Conv2d(3, config.widths["a"], 1, bias=False)
        self.conv2 = nn.Conv2d(config.widths["a"], config.widths["b"], 1)

    def embed(self, image):
        return self.conv2(self.conv1(image))

    def channel_groups(self):
        return {"conv1.weight": ("a", None, None, None), "conv2.weight": ("b", "a", None, None), "conv2.bias": ("b",)}


def test_refit_recovers_pruned_channels_that_the_kept_ones_span():
    torch.manual_seed(0)
    parent = Linear(CONFIG).eval()
    with torch.no_grad():
        w = parent.conv1.weight[:, :, 0, 0]
        w[:3] = torch.tensor([[3.0, 1, 0], [0, 3, 1], [1, 0, 3]])  # the three strongest: they span every input
        w[3:] = 0.5 * torch.randn(3, 3)
    student = shrink(parent, {"a": 3})
    images = [torch.rand(2, 3, 9, 9) for _ in range(3)]
    layers = refit(parent, student, images, lambda model, image: model.embed(image), ridge=1e-10)
    assert [(r.name, r.inputs, r.parent_inputs) for r in layers] == [("conv2", 3, 6)]
    assert layers[0].error_before > 0.05 and layers[0].error_after < 1e-8
    with torch.no_grad():
        unseen = torch.rand(1, 3, 5, 5)
        torch.testing.assert_close(student.embed(unseen), parent.embed(unseen), atol=1e-4, rtol=1e-4)
    # the student's first layer is the parent's kept channels, untouched
    torch.testing.assert_close(student.conv1.weight, parent.conv1.weight[:3])


def test_refit_leaves_a_model_at_its_parents_widths_as_it_is(teacher):
    student = shrink(teacher, dict(CONFIG.widths))
    assert refit(teacher, student, [torch.rand(1, 3, 15, 15)], lambda model, image: model.embed(image)) == []
