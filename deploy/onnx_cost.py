"""What a tracker's ONNX models cost: the weights it holds and the FLOPs of one run of each model.

FLOPs follow torch's FlopCounterMode, which ``edgetrack models`` reports (``distill/models/summary.py``), so a
bundle and the zoo summary give the same numbers: a multiply-add counts 2, and only convolutions and matrix
products are counted (Conv, ConvTranspose, Gemm, MatMul); biases, activations, pooling and every elementwise op
count nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterator

import onnx
from onnx import numpy_helper

from edgetrack.runtime.bundle import ModelCost
from edgetrack.runtime.errors import BundleError


def _stored_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    yield from model.graph.initializer
    for node in model.graph.node:
        if node.op_type == "Constant":
            yield from (attr.t for attr in node.attribute if attr.name == "value")


def _weights(model: onnx.ModelProto) -> Counter:
    """(elements, content digest) of every floating-point tensor of rank >= 1 the model stores, with multiplicity."""
    held = Counter()
    for tensor in _stored_tensors(model):
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind == "f" and array.ndim > 0:
            digest = hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()
            held[(array.size, digest)] += 1
    return held


def count_params(*models: onnx.ModelProto) -> int:
    """Elements of the distinct weights held by ``models`` run together: a tensor that several of them store
    (a backbone the template and search models share) counts once, as often as the model that stores it most.

    Rank-0 constants are left out: they are operator arguments (Clip bounds, a score scale), not weights.
    """
    held = Counter()
    for model in models:
        held |= _weights(model)  # Counter union keeps the largest multiplicity
    return sum(size * copies for (size, _), copies in held.items())


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    graph = inferred.graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    return shapes


def _node_flops(node: onnx.NodeProto, shape: Callable[[str], tuple[int, ...]]) -> int:
    if node.op_type == "Conv":
        # every output element is a dot product over C_in/groups * kernel inputs, whether the weight is an
        # initializer or a computed tensor (depth-wise correlation with the template)
        return 2 * math.prod(shape(node.output[0])) * math.prod(shape(node.input[1])[1:])
    if node.op_type == "ConvTranspose":
        # every input element is scattered through C_out/groups * kernel weights (weight: C_in, C_out/groups, k...)
        return 2 * math.prod(shape(node.input[0])) * math.prod(shape(node.input[1])[1:])
    if node.op_type == "Gemm":
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        inner = shape(node.input[0])[0 if trans_a else 1]
        return 2 * math.prod(shape(node.output[0])) * inner
    if node.op_type == "MatMul":
        return 2 * math.prod(shape(node.output[0])) * shape(node.input[0])[-1]
    return 0


def count_flops(model: onnx.ModelProto) -> int:
    """Floating-point operations of one run of ``model``, whose input shapes must be static."""
    shapes = _static_shapes(model)

    def shape(name: str) -> tuple[int, ...]:
        if name not in shapes:
            raise BundleError(
                f"cannot count the FLOPs of a model whose tensor {name!r} has no static shape; give its inputs fixed sizes"
            )
        return shapes[name]

    return sum(_node_flops(node, shape) for node in model.graph.node)


def model_cost(template: onnx.ModelProto, search: onnx.ModelProto) -> ModelCost:
    """The cost a bundle records for its fp32 template and search models."""
    return ModelCost(
        params=count_params(template, search),
        template_gflops=count_flops(template) / 1e9,
        search_gflops=count_flops(search) / 1e9,
    )
