"""The cost a bundle records: parameters and GFLOPs counted from its ONNX graphs, equal to torch's FlopCounterMode
on hand-built graphs with known answers, on exported zoo models and on the published NanoTrack pairs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from conftest import nanotrack_pair
from onnx import TensorProto, helper, numpy_helper

from edgetrack.deploy.onnx_cost import count_flops, count_params, model_cost
from edgetrack.runtime.bundle import ModelCost, load_bundle
from edgetrack.runtime.errors import BundleError

# The known answers of the hand-built graph: 2 FLOPs per multiply-add, biases and elementwise ops free.
CONV_FLOPS = 2 * (8 * 32 * 32) * (3 * 3 * 3)  # (1, 3, 32, 32) -> (1, 8, 32, 32), 3x3 kernel, padded
DEPTHWISE_FLOPS = 2 * (8 * 29 * 29) * (1 * 4 * 4)  # 8 groups, one 4x4 kernel each, from the template features
TRANSPOSED_FLOPS = 2 * (8 * 32 * 32) * (2 * 2 * 2)  # every input element scattered through 2 channels x 2x2
GEMM_FLOPS = 2 * 4 * 8  # (1, 8) x (8, 4)
MATMUL_FLOPS = 2 * (5 * 841) * 8  # (5, 8) x (1, 8, 841), broadcast over the batch
CONV_PARAMS, TRANSPOSED_PARAMS, GEMM_PARAMS, MATMUL_PARAMS = 8 * 27 + 8, 8 * 2 * 2 * 2, 4 * 8 + 4, 5 * 8


def hand_built() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def weight(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    initializers = [
        weight("conv_w", (8, 3, 3, 3)),
        weight("conv_b", (8,)),
        weight("up_w", (8, 2, 2, 2)),
        weight("gemm_w", (4, 8)),
        weight("gemm_b", (4,)),
        weight("mm_w", (5, 8)),
        # operator arguments, not weights: an int64 shape and a rank-0 scale
        numpy_helper.from_array(np.array([8, 1, 4, 4], np.int64), "kernel_shape"),
        numpy_helper.from_array(np.array([1, 8, -1], np.int64), "rows_shape"),
        numpy_helper.from_array(np.array(0.5, np.float32), "gain"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["zf", "kernel_shape"], ["kernel"]),
        helper.make_node("Conv", ["y", "kernel"], ["corr"], group=8),
        helper.make_node("Mul", ["corr", "gain"], ["scaled"]),
        helper.make_node("ConvTranspose", ["y", "up_w"], ["up"], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["scaled"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "gemm_w", "gemm_b"], ["logits"], transB=1),
        helper.make_node("Reshape", ["scaled", "rows_shape"], ["rows"]),
        helper.make_node("MatMul", ["mm_w", "rows"], ["mixed"]),
    ]
    graph = helper.make_graph(
        nodes,
        "hand-built",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32]),
            helper.make_tensor_value_info("zf", TensorProto.FLOAT, [1, 8, 4, 4]),
        ],
        [
            helper.make_tensor_value_info("up", TensorProto.FLOAT, [1, 2, 64, 64]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("mixed", TensorProto.FLOAT, [1, 5, 841]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def test_hand_built_graph_has_its_known_cost():
    model = hand_built()
    assert count_flops(model) == CONV_FLOPS + DEPTHWISE_FLOPS + TRANSPOSED_FLOPS + GEMM_FLOPS + MATMUL_FLOPS
    assert count_params(model) == CONV_PARAMS + TRANSPOSED_PARAMS + GEMM_PARAMS + MATMUL_PARAMS


def test_hand_built_graph_costs_what_flop_counter_mode_counts():
    """The convention checked on torch itself: the same five operations, counted by FlopCounterMode."""
    torch = pytest.importorskip("torch", reason="torch is not installed in this environment")
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    x, zf = torch.rand(1, 3, 32, 32), torch.rand(1, 8, 4, 4)
    with FlopCounterMode(display=False) as counter:
        y = F.conv2d(x, torch.rand(8, 3, 3, 3), torch.rand(8), padding=1)
        corr = F.conv2d(y, zf.reshape(8, 1, 4, 4), groups=8) * 0.5
        F.conv_transpose2d(y, torch.rand(8, 2, 2, 2), stride=2)
        F.linear(corr.mean((2, 3)), torch.rand(4, 8), torch.rand(4))
        torch.matmul(torch.rand(5, 8), corr.reshape(1, 8, -1))
    assert counter.get_total_flops() == count_flops(hand_built())


def test_a_tensor_both_models_hold_counts_once():
    """The search model repeats the template's backbone: the tracker holds one copy of its weights."""
    template = hand_built()
    search = onnx.ModelProto()
    search.CopyFrom(template)
    search.graph.initializer.append(numpy_helper.from_array(np.ones((3, 7), np.float32), "extra"))
    single = count_params(template)
    assert count_params(template, search) == single + 21
    assert count_params(search, search) == single + 21


def test_a_dynamic_shape_is_refused():
    model = hand_built()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(BundleError, match="tensor 'y' has no static shape"):
        count_flops(model)


def folded_weight_count(model) -> int:
    """What the exported files must hold for ``model``: the parameters its template and track runs use, with
    every BatchNorm folded into the convolution it follows (its weight and bias go, and a bias-free convolution
    gains a bias of one value per channel), plus the constant buffers the graph keeps (the shift-sum convolution
    of pixel-wise correlation)."""
    import torch

    order = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda module, args, out: order.append(module)) for m in leaves]
    z, x = model.example_crops()
    with torch.no_grad():
        model.track(x, *model.template_features(z))
    for hook in hooks:
        hook.remove()
    previous = {}  # each module that ran, once, with the module that ran just before it
    for before, module in zip([None, *order], order):
        previous.setdefault(module, before)
    count = 0
    for module, before in previous.items():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert isinstance(before, torch.nn.Conv2d)
            count += module.num_features if before.bias is None else 0
        else:
            count += sum(p.numel() for p in module.parameters())
    persistent = model.state_dict()
    return count + sum(b.numel() for name, b in model.named_buffers() if name not in persistent)


@pytest.mark.parametrize("name", ["nanotrack-v3-s50", "siamrpn-alexnet-s50"])
def test_exported_zoo_model_records_what_torch_counts(name, tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed in this environment")
    from edgetrack.deploy.export import export_model, load_model
    from edgetrack.distill.models import preset
    from edgetrack.distill.models.summary import summarise

    torch.manual_seed(0)
    model = load_model(name, None)
    # Fresh BatchNorms fold into identical zero biases, which the exporter stores once; trained ones never do.
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        for tensor in (bn.weight.data, bn.running_var):
            tensor.uniform_(0.5, 1.5)
        for tensor in (bn.bias.data, bn.running_mean):
            tensor.uniform_(-0.1, 0.1)
    cost = export_model(model, tmp_path / f"{name}.etb").meta.cost
    summary = summarise(preset(name))
    # the same counting rule on the same convolutions and products: equal, not merely close
    assert cost.template_gflops == pytest.approx(summary.template_gflops, rel=1e-9)
    assert cost.search_gflops == pytest.approx(summary.search_gflops, rel=1e-9)
    assert cost.params == folded_weight_count(model)


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_imported_nanotrack_records_its_cost(nanotrack_bundles, version):
    """The bundle holds the published backbone and head, each once, whatever the template and search models repeat."""
    cost = nanotrack_bundles[version].meta.cost
    pair = [onnx.load(str(path)) for path in nanotrack_pair(version)]
    weights = [numpy_helper.to_array(t) for model in pair for t in model.graph.initializer]
    assert cost.params == sum(w.size for w in weights if w.dtype == np.float32 and w.ndim > 0)
    assert cost.search_gflops > cost.template_gflops > 0


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_imported_nanotrack_flops_equal_its_zoo_preset(nanotrack_bundles, version):
    pytest.importorskip("torch", reason="torch is not installed in this environment")
    from edgetrack.distill.models import preset
    from edgetrack.distill.models.summary import summarise

    summary = summarise(preset(f"nanotrack-{version}"))
    cost = nanotrack_bundles[version].meta.cost
    assert cost.template_gflops == pytest.approx(summary.template_gflops, rel=1e-9)
    assert cost.search_gflops == pytest.approx(summary.search_gflops, rel=1e-9)


def test_bundle_cost_is_the_cost_of_its_fp32_files(nanotrack_bundles):
    bundle = nanotrack_bundles["v2"]
    template, search = (onnx.load(str(path)) for path in bundle.model_paths("fp32"))
    assert bundle.meta.cost == model_cost(template, search)


def test_a_bundle_written_before_cost_was_recorded_still_loads(nanotrack_bundles, tmp_path):
    path = tmp_path / "old.etb"
    shutil.copytree(nanotrack_bundles["v2"].path, path)
    meta = json.loads((path / "edgetrack.json").read_text())
    del meta["cost"]
    (path / "edgetrack.json").write_text(json.dumps(meta))
    assert load_bundle(path).meta.cost is None
    assert isinstance(nanotrack_bundles["v2"].meta.cost, ModelCost)
