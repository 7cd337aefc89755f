"""SiamFC and SiamRPN: the papers' sizes, the runtime's shapes, the references' functions (got10k's grouped AlexNet,
DaSiamRPN's up-channel RPN) in both correlation forms, width groups that shrink truthfully, and students whose
search models take no convolution weights from the template."""

from __future__ import annotations

import pytest

# The torch floor needs torch; the Python 3.10 run of `make test-py310` has none (its CPU wheel is for 3.11).
pytest.importorskip("torch", reason="torch is not installed in this environment")

import dataclasses
import io

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from edgetrack.distill.models import siamfc, siamrpn
from edgetrack.distill.models.base import check_outputs
from edgetrack.distill.models.alexnet import alexnet_feature_size
from edgetrack.distill.models.correlation import KernelXCorr
from edgetrack.distill.models.siamfc import SiamFC
from edgetrack.distill.models.siamrpn import SiamRPN
from edgetrack.distill.shrink import shrink

PRESETS = {**siamfc.PRESETS, **siamrpn.PRESETS}
CLASSES = {"siamfc": SiamFC, "siamrpn": SiamRPN}
# 90M parameters: shapes and counts are checked on the meta device, where building it costs nothing.
META = {"siamrpn-big"}


def build(config, device="cpu"):
    with torch.device(device):
        return CLASSES[config.family](config).eval()


def crops(config, dtype=torch.float32, device="cpu"):
    """One exemplar crop and a search crop per scale, as the runtime feeds them."""
    g = config.geometry
    generator = torch.Generator().manual_seed(0)
    z = torch.rand(1, 3, g.exemplar_size, g.exemplar_size, generator=generator, dtype=dtype) * 255
    x = torch.rand(g.num_scales, 3, g.instance_size, g.instance_size, generator=generator, dtype=dtype) * 255
    return z.to(device), x.to(device)


def run(model, z, x):
    zf = model.template(z)
    zf = zf if isinstance(zf, tuple) else (zf,)
    return zf, model.track(x, *zf)


def small(config, correlation=None, **widths):
    """A cheap model of ``config``'s family: 8 channels everywhere unless told otherwise."""
    config = config.with_widths({group: widths.get(group, 8) for group in config.widths})
    return dataclasses.replace(config, correlation=correlation or config.correlation)


# ------------------------------------------------------------------------------------------------- sizes


def test_teachers_have_the_papers_sizes():
    counts = {
        name: sum(p.numel() for p in build(PRESETS[name], "meta").parameters()) for name in ("siamrpn-big", "siamfc-alexnet")
    }
    assert counts["siamrpn-big"] == pytest.approx(90.4e6, rel=0.01)
    assert counts["siamfc-alexnet"] == pytest.approx(2.33e6, rel=0.05)
    # exactly the references' counts: DaSiamRPN's SiamRPNBIG and got10k's AlexNetV1
    assert counts == {"siamrpn-big": 90_436_132, "siamfc-alexnet": 2_336_320}
    assert sum(p.numel() for p in build(PRESETS["siamrpn-alexnet"], "meta").parameters()) == 22_632_932


def test_score_sizes_follow_from_the_crops():
    assert [alexnet_feature_size(s) for s in (127, 255, 271)] == [6, 22, 24]
    for config in PRESETS.values():
        assert config.geometry.score_size == {"siamfc": 17, "siamrpn": 19}[config.family], config.name
    assert PRESETS["siamfc-alexnet"].geometry.extension.upsample == 16  # got10k's 272-pixel response over 17 cells


def test_a_geometry_the_network_cannot_produce_is_refused():
    config = PRESETS["siamfc-alexnet-s25"]
    with pytest.raises(ValueError, match="17x17"):
        build(dataclasses.replace(config, geometry=dataclasses.replace(config.geometry, score_size=18)))
    with pytest.raises(ValueError, match="upchannel or pixelwise"):
        build(small(PRESETS["siamrpn-alexnet"], correlation="depthwise"))


def test_students_have_teachers_and_the_export_friendly_correlation():
    for name, config in PRESETS.items():
        if config.teacher is None:
            continue
        teacher = PRESETS[config.teacher]
        assert config.correlation == "pixelwise" and set(config.widths) == set(teacher.widths), name
        assert all(config.widths[g] < teacher.widths[g] for g in config.widths), name
        assert (config.geometry, config.input, config.template_outputs) == (
            teacher.geometry,
            teacher.input,
            teacher.template_outputs,
        )


# ------------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_outputs_have_the_geometrys_shapes(name):
    config = PRESETS[name]
    device = "meta" if name in META else "cpu"
    model = build(config, device)
    g = config.geometry
    with torch.no_grad():
        zf, outputs = run(model, *crops(config, device=device))
    check_outputs(model, outputs)
    assert len(zf) == len(config.template_outputs)
    s = g.score_size
    if config.family == "siamfc":
        # one template for the whole scale pyramid
        assert zf[0].shape[0] == 1 and outputs["score"].shape == (g.num_scales, 1, s, s)
    else:
        assert outputs["cls"].shape == (1, 2 * g.extension.num_anchors, s, s)
        assert outputs["loc"].shape == (1, 4 * g.extension.num_anchors, s, s)
    if device == "cpu":
        assert all(torch.isfinite(t).all() for t in outputs.values())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_width_is_used_and_correlation_partners_share_theirs(name):
    # test_zoo.py checks the groups against the tensor shapes for every preset
    config = PRESETS[name]
    groups = build(config, "meta" if name in META else "cpu").channel_groups()
    assert {g for dims in groups.values() for g in dims if g} == set(config.widths)
    if config.family == "siamrpn":
        assert groups["conv_cls1.weight"][1] == groups["conv_cls2.weight"][0] == "cls"
        assert groups["conv_r1.weight"][1] == groups["conv_r2.weight"][0] == "loc"


@pytest.mark.parametrize("correlation", ["pixelwise", "depthwise", "upchannel"])
@pytest.mark.parametrize("draw", ["ones", "random"])
def test_any_positive_widths_build_and_run(correlation, draw):
    generator = torch.Generator().manual_seed(0)
    for teacher in (PRESETS["siamfc-alexnet"], PRESETS["siamrpn-alexnet"]):
        if teacher.family == "siamrpn" and correlation == "depthwise":
            continue
        # random widths include odd ones, which grouped convolutions could not take
        widths = {g: 1 if draw == "ones" else int(torch.randint(1, 12, (1,), generator=generator)) for g in teacher.widths}
        config = small(teacher, correlation, **widths)
        with torch.no_grad():
            _, outputs = run(build(config), *crops(config))
        s = config.geometry.score_size
        assert all(t.shape[-2:] == (s, s) and torch.isfinite(t).all() for t in outputs.values())


# ------------------------------------------------------------------------------------------- correlation


@pytest.mark.parametrize("kernels, kernel_size", [(1, 6), (10, 4), (3, 1)])
@pytest.mark.parametrize("matmul", [True, False])
def test_kernel_xcorr_is_a_convolution_with_the_template_as_weight(kernels, kernel_size, matmul):
    generator = torch.Generator().manual_seed(kernels)
    b, c, size = 2, 5, 11
    x = torch.randn(b, c, size, size, generator=generator, dtype=torch.float64)
    kernel = torch.randn(b, kernels * c, kernel_size, kernel_size, generator=generator, dtype=torch.float64)
    got = KernelXCorr(kernels, kernel_size, matmul).double()(x, kernel)
    want = torch.cat([F.conv2d(x[i : i + 1], kernel[i].reshape(kernels, c, kernel_size, kernel_size)) for i in range(b)])
    assert got.shape == (b, kernels, size - kernel_size + 1, size - kernel_size + 1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def _randomise_batchnorm(model):
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = torch.rand(n, generator=generator) + 0.5
            module.bias.data = torch.randn(n, generator=generator)
            module.running_mean = torch.randn(n, generator=generator)
            module.running_var = torch.rand(n, generator=generator) + 0.5


def _reference_alexnet():
    """got10k's AlexNetV1: the grouped AlexNet of SiamFC."""

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-6, momentum=0.05)

    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 96, 11, 2), bn(96), nn.ReLU(), nn.MaxPool2d(3, 2)),
        nn.Sequential(nn.Conv2d(96, 256, 5, groups=2), bn(256), nn.ReLU(), nn.MaxPool2d(3, 2)),
        nn.Sequential(nn.Conv2d(256, 384, 3), bn(384), nn.ReLU()),
        nn.Sequential(nn.Conv2d(384, 384, 3, groups=2), bn(384), nn.ReLU()),
        nn.Conv2d(384, 256, 3, groups=2),
    )


def _towers_from_grouped(reference) -> dict[str, torch.Tensor]:
    """The reference's weights as SiamFC's towers: tower t holds output half t (and conv3 block (t, s) input half s)."""
    state = {}

    def take(prefix, module, out, source=slice(None)):
        for key, value in module.state_dict().items():
            if key != "num_batches_tracked":
                value = value[out, source] if value.dim() > 1 else value[out]
            state[f"{prefix}.{key}"] = value

    for t in range(2):
        halves = {n: slice(t * n, (t + 1) * n) for n in (48, 128, 192)}
        take(f"conv1.{t}.0", reference[0][0], halves[48])
        take(f"conv1.{t}.1", reference[0][1], halves[48])
        take(f"conv2.{t}.0", reference[1][0], halves[128])
        take(f"conv2.{t}.1", reference[1][1], halves[128])
        for s in range(2):
            take(f"conv3.{t}.convs.{s}", reference[2][0], halves[192], slice(s * 128, (s + 1) * 128))
        del state[f"conv3.{t}.convs.1.bias"]  # the reference adds conv3's bias once, as block 0 does
        take(f"conv3.{t}.bn", reference[2][1], halves[192])
        take(f"conv4.{t}.0", reference[3][0], halves[192])
        take(f"conv4.{t}.1", reference[3][1], halves[192])
        take(f"conv5.{t}", reference[4], halves[128])
    return state


@pytest.mark.parametrize("correlation", ["depthwise", "pixelwise"])
def test_siamfc_is_the_grouped_reference(correlation):
    torch.manual_seed(0)
    reference = _reference_alexnet()
    _randomise_batchnorm(reference)
    reference = reference.double().eval()
    config = dataclasses.replace(PRESETS["siamfc-alexnet"], correlation=correlation)
    model = build(config)
    model.load_state_dict(_towers_from_grouped(reference))
    model.double()
    z, x = crops(config, dtype=torch.float64)
    x = x[:2]
    with torch.no_grad():
        want = F.conv2d(reference(x), reference(z)) * 0.001  # the reference head for one template
        _, got = run(model, z, x)
    torch.testing.assert_close(got["score"], want)


class _ReferenceRPN(nn.Module):
    """DaSiamRPN's SiamRPN at any widths: up-channel kernels from the template, correlated by convolution."""

    def __init__(self, widths, feature_out, anchors):
        super().__init__()
        c = (3, *widths)
        self.anchors, self.feature_out = anchors, feature_out
        self.featureExtract = nn.Sequential(
            nn.Conv2d(c[0], c[1], 11, stride=2), nn.BatchNorm2d(c[1]), nn.MaxPool2d(3, 2), nn.ReLU(),
            nn.Conv2d(c[1], c[2], 5), nn.BatchNorm2d(c[2]), nn.MaxPool2d(3, 2), nn.ReLU(),
            nn.Conv2d(c[2], c[3], 3), nn.BatchNorm2d(c[3]), nn.ReLU(),
            nn.Conv2d(c[3], c[4], 3), nn.BatchNorm2d(c[4]), nn.ReLU(),
            nn.Conv2d(c[4], c[5], 3), nn.BatchNorm2d(c[5]),
        )  # fmt: skip
        self.conv_r1 = nn.Conv2d(c[5], feature_out * 4 * anchors, 3)
        self.conv_r2 = nn.Conv2d(c[5], feature_out, 3)
        self.conv_cls1 = nn.Conv2d(c[5], feature_out * 2 * anchors, 3)
        self.conv_cls2 = nn.Conv2d(c[5], feature_out, 3)
        self.regress_adjust = nn.Conv2d(4 * anchors, 4 * anchors, 1)

    def forward(self, z, x):
        zf, xf = self.featureExtract(z), self.featureExtract(x)
        k = zf.size(-1) - 2
        r1 = self.conv_r1(zf).view(4 * self.anchors, self.feature_out, k, k)
        cls1 = self.conv_cls1(zf).view(2 * self.anchors, self.feature_out, k, k)
        return F.conv2d(self.conv_cls2(xf), cls1), self.regress_adjust(F.conv2d(self.conv_r2(xf), r1))


def _siamrpn_from_reference(reference) -> dict[str, torch.Tensor]:
    layers = {0: "conv1.0", 1: "conv1.1", 4: "conv2.0", 5: "conv2.1", 8: "conv3.0", 9: "conv3.1"}
    layers |= {11: "conv4.0", 12: "conv4.1", 14: "conv5.0", 15: "conv5.1"}
    state = {}
    for key, value in reference.state_dict().items():
        head, rest = key.split(".", 1)
        if head == "featureExtract":
            index, param = rest.split(".", 1)
            state[f"features.{layers[int(index)]}.{param}"] = value
        elif head in ("conv_r1", "conv_cls1"):
            kernels = value.shape[0] // reference.feature_out
            state[key] = value.reshape(kernels, reference.feature_out, *value.shape[1:])
        else:
            state[key] = value
    return state


@pytest.mark.parametrize("correlation", ["upchannel", "pixelwise"])
def test_siamrpn_is_dasiamrpn_in_pysots_layout(correlation):
    widths = (16, 24, 32, 24, 20)
    torch.manual_seed(0)
    reference = _ReferenceRPN(widths, feature_out=12, anchors=5)
    _randomise_batchnorm(reference)
    reference = reference.double().eval()
    config = small(PRESETS["siamrpn-alexnet"], correlation, **dict(zip(siamrpn.GROUPS, (*widths, 12, 12))))
    model = build(config)
    model.load_state_dict(_siamrpn_from_reference(reference))
    model.double()
    z, x = crops(config, dtype=torch.float64)
    with torch.no_grad():
        want_cls, want_loc = reference(z, x)
        _, got = run(model, z, x)
    # DaSiamRPN decodes these as the runtime does: cls.reshape(2, -1), loc.reshape(4, -1), anchor-major.
    torch.testing.assert_close(got["cls"], want_cls)
    torch.testing.assert_close(got["loc"], want_loc)


@pytest.mark.parametrize("name", ["siamfc-alexnet-s25", "siamrpn-alexnet-s25"])
def test_both_correlation_forms_share_parameters_and_agree(name):
    student = PRESETS[name]
    teacher_form = PRESETS[student.teacher].correlation
    model = build(student).double()
    other = build(dataclasses.replace(student, correlation=teacher_form)).double()
    other.load_state_dict(model.state_dict(), strict=True)
    z, x = crops(student, dtype=torch.float64)
    with torch.no_grad():
        _, want = run(other, z, x)
        _, got = run(model, z, x)
    for key in want:
        torch.testing.assert_close(got[key], want[key])


# ------------------------------------------------------------------------------------ shrink and export


@pytest.mark.parametrize("teacher", ["siamfc-alexnet", "siamrpn-alexnet"])
def test_a_dead_channel_of_every_group_shrinks_away_without_changing_the_outputs(teacher):
    """Channel 0 of every group produces zeros, so shrinking each group by one must drop exactly those channels from
    every tensor that writes or reads them (both SiamFC towers, both sides of each SiamRPN correlation)."""
    config = small(PRESETS[teacher])
    model = build(config)
    _randomise_batchnorm(model)
    groups = model.channel_groups()
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            dims = groups[key]
            if dims and dims[0] is not None and not key.endswith("running_var"):
                tensor[0] = 0
    student = shrink(model, {g: w - 1 for g, w in config.widths.items()})
    assert student.config.widths == {g: 7 for g in config.widths}
    z, x = crops(config, dtype=torch.float64)
    with torch.no_grad():
        _, want = run(model.double(), z, x)
        _, got = run(student.double(), z, x)
    for key in want:
        torch.testing.assert_close(got[key], want[key])


class _Search(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, *zf):
        outputs = self.model.track(x, *zf)
        return tuple(outputs[name] for name in self.model.config.spec.outputs)


def _conv_weights_from_inputs(model) -> int:
    """How many Conv nodes of the exported search model have a weight that is not a constant of the model."""
    z, x = crops(model.config)
    with torch.no_grad():
        zf, _ = run(model, z, x)
    buffer = io.BytesIO()
    names = ["x", *model.config.template_outputs]
    torch.onnx.export(_Search(model), (x, *zf), buffer, dynamo=False, input_names=names, opset_version=17)
    graph = onnx.load_from_string(buffer.getvalue()).graph
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return sum(1 for node in graph.node if node.op_type == "Conv" and node.input[1] not in constants)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", ["siamfc-alexnet-s25", "siamrpn-alexnet-s25"])
def test_student_search_models_take_no_convolution_weights_from_the_template(name):
    student = PRESETS[name]
    assert _conv_weights_from_inputs(build(student)) == 0
    teacher_form = dataclasses.replace(student, correlation=PRESETS[student.teacher].correlation)
    assert _conv_weights_from_inputs(build(teacher_form)) == len(student.template_outputs)
