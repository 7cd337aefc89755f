"""fp16 and int8 models for ONNX Runtime, made from a bundle's fp32 models.

Both keep float32 inputs and outputs, so the runtime feeds every precision the same buffers. fp16 keeps the ops
whose values do not fit in half precision in fp32. int8 is ONNX Runtime's static quantisation, calibrated on real
crops (``calibration.CalibrationCrops``); ``benchmarks/int8_forms.py`` measures which form is fastest here and
``DEFAULT_INT8`` is what it found.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import create_calibrator
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgetrack.defaults import CALIB_METHODS
from edgetrack.runtime.bundle import Bundle
from edgetrack.runtime.errors import BundleError, InputError

from .calibration import CalibrationCrops

#: Ops kept in fp32 in fp16 models: NanoTrack v1's box regression ends in an Exp whose output reaches 1.9e6 on
#: real crops, far past fp16's 65504, so Exp is computed from an fp32 input (the Cast sits before it).
FP16_KEEP_FP32 = ("Exp",)
#: How the histogram methods are run. ``quantize_static`` builds the entropy histogram with as many bins as it
#: quantises to (128), which leaves one candidate threshold: its "entropy" ranges are exactly MinMax's. TensorRT's
#: entropy calibrator uses 2048 bins for 128 levels, and so does this. Percentile ranges default to symmetric
#: about zero, which wastes half of the uint8 codes on activations that are never negative.
HISTOGRAM_CALIBRATION = {
    "entropy": (CalibrationMethod.Entropy, {"num_bins": 2048, "num_quantized_bins": 128}),
    "percentile": (CalibrationMethod.Percentile, {"symmetric": False, "percentile": 99.999}),
}
INT8_FORMATS = ("qdq", "qoperator")
#: QDQ with per-channel scales needs DequantizeLinear's ``axis`` (opset 13); the quantiser does not raise the
#: opset itself, and NanoTrack v1 was exported at opset 9.
QDQ_MIN_OPSET = 13


@dataclass(frozen=True)
class Int8Form:
    """How ONNX Runtime's static quantisation writes the int8 graph."""

    #: ``qdq``: QuantizeLinear/DequantizeLinear pairs around fp32 ops, fused into int8 kernels at load time;
    #: ``qoperator``: QLinearConv and friends written into the file.
    format: str = "qdq"
    #: one scale per output channel of each weight instead of one per tensor
    per_channel: bool = True
    #: ``uint8`` or ``int8`` activations (weights are always int8)
    activations: str = "uint8"
    #: run ``quant_pre_process`` (shape inference and ONNX Runtime's basic graph fusions) first
    preprocess: bool = False
    #: leave the first convolution (the one on raw pixels) in fp32
    keep_first_conv: bool = False
    #: leave depth-wise convolutions (one group per channel) in fp32
    keep_depthwise: bool = False
    #: quantise only these op types (None: every op type the quantiser knows)
    op_types: tuple[str, ...] | None = None

    def describe(self) -> dict:
        return {
            "format": self.format,
            "per_channel": self.per_channel,
            "activations": self.activations,
            "preprocess": self.preprocess,
            "keep_first_conv": self.keep_first_conv,
            "keep_depthwise": self.keep_depthwise,
            "op_types": None if self.op_types is None else list(self.op_types),
        }


#: The fastest form that passes the accuracy gate on this project's CPU (see benchmarks/README.md).
DEFAULT_INT8 = Int8Form(format="qoperator", keep_first_conv=True, keep_depthwise=True)


def _toposort(graph: onnx.GraphProto) -> None:
    """Order nodes so that each comes after its inputs' producers, as ``onnx.checker`` requires: the fp16
    converter appends the Casts it inserts at the end of the node list."""
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in known for name in n.input)]
        if not ready:
            raise BundleError(f"graph {graph.name!r} has a cycle or an input no node produces; re-export the bundle")
        for node in ready:
            known.update(node.output)
        ordered += ready
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    nodes = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(nodes, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with fp16 weights and compute, float32 inputs and outputs, and ``FP16_KEEP_FP32`` ops in fp32."""
    # ONNX Runtime ships the converter of onnxconverter-common, so fp16 needs no extra dependency.
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    half = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FP32]
    )
    _toposort(half.graph)
    return half


def _single_opsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with one opset entry per domain: ``onnx.compose.merge_models`` keeps both inputs' entries (the
    fused NanoTrack search model lists ai.onnx twice), and the quantiser insists on exactly one."""
    clean = onnx.ModelProto()
    clean.CopyFrom(model)
    versions: dict[str, int] = {}
    for opset in model.opset_import:
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        versions[domain] = max(versions.get(domain, 0), opset.version)
    del clean.opset_import[:]
    clean.opset_import.extend(onnx.helper.make_opsetid(domain, version) for domain, version in versions.items())
    return clean


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _first_conv(model: onnx.ModelProto) -> list[str]:
    inputs = {v.name for v in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in inputs][:1]


def _depthwise(model: onnx.ModelProto) -> list[str]:
    weights = {t.name: t.dims for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = weights.get(node.input[1]) if node.op_type == "Conv" else None
        if dims is not None and group > 1 and group == dims[0] and dims[1] == 1:
            found.append(node.name)
    return found


class _Feeds(CalibrationDataReader):
    """Hands ONNX Runtime's calibrator one feed at a time."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]):
        self._feeds = feeds
        self._next = 0

    def get_next(self):
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return dict(self._feeds[self._next - 1])

    def rewind(self) -> None:
        self._next = 0


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantiser prints its calibration steps to stdout and, on every call, advises pre-processing
    through the root logger; benchmarks/int8_forms.py measured the pre-processing (no faster here)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def effective_form(method: str, form: Int8Form) -> Int8Form:
    """The form ``quantize_int8`` writes for ``method``. The histogram methods reach the quantiser as per-tensor
    range overrides, which ONNX Runtime 1.32 applies correctly only in QDQ format: QOperator models made with
    them were measured 100% off fp32 and tracked with AUC 0.05, so those methods write QDQ."""
    if method in HISTOGRAM_CALIBRATION and form.format == "qoperator":
        return dataclasses.replace(form, format="qdq")
    return form


def quantize_int8(
    model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], method: str = "minmax", form: Int8Form = DEFAULT_INT8
) -> onnx.ModelProto:
    """Static int8 quantisation of ``model`` with activation ranges measured on ``feeds``."""
    if method not in CALIB_METHODS:
        raise InputError(f"unknown calibration method {method!r} (choose from {', '.join(CALIB_METHODS)})")
    if form.format not in INT8_FORMATS:
        raise InputError(f"unknown int8 format {form.format!r} (choose from {', '.join(INT8_FORMATS)})")
    if not feeds:
        raise InputError("int8 quantisation needs at least one calibration feed")
    form = effective_form(method, form)
    with tempfile.TemporaryDirectory(prefix="edgetrack-int8-") as tmp, _quiet():
        source = Path(tmp) / "fp32.onnx"
        model = _single_opsets(model)
        if form.format == "qdq" and _opset(model) < QDQ_MIN_OPSET:
            model = onnx.version_converter.convert_version(model, QDQ_MIN_OPSET)
        onnx.save(model, source)
        if form.preprocess:
            quant_pre_process(str(source), str(Path(tmp) / "pre.onnx"), skip_symbolic_shape=True)
            source = Path(tmp) / "pre.onnx"
        graph = onnx.load(source)
        nodes = set(_first_conv(graph)) if form.keep_first_conv else set()
        if form.keep_depthwise:
            nodes |= set(_depthwise(graph))
        # The histogram methods' ranges are measured here and handed to the quantiser as overrides of its MinMax ones.
        overrides = _histogram_ranges(source, feeds, method, Path(tmp)) if method in HISTOGRAM_CALIBRATION else {}
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            source,
            out,
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ if form.format == "qdq" else QuantFormat.QOperator,
            per_channel=form.per_channel,
            activation_type=QuantType.QUInt8 if form.activations == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(nodes),
            op_types_to_quantize=None if form.op_types is None else list(form.op_types),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"TensorQuantOverrides": overrides} if overrides else None,
        )
        return onnx.load(out)


def _histogram_ranges(model: Path, feeds, method: str, tmp: Path) -> dict[str, list[dict[str, np.float32]]]:
    calibrate_method, options = HISTOGRAM_CALIBRATION[method]
    calibrator = create_calibrator(
        model, [], augmented_model_path=str(tmp / "augmented.onnx"), calibrate_method=calibrate_method, extra_options=options
    )
    calibrator.collect_data(_Feeds(feeds))
    ranges = calibrator.compute_data()
    # The quantiser does numpy arithmetic on the overrides, so they stay float32 scalars.
    return {
        name: [{"rmin": np.float32(np.min(data.range_value[0])), "rmax": np.float32(np.max(data.range_value[1]))}]
        for name, data in ranges.data.items()
    }


def check_runs(model: onnx.ModelProto, feed: Mapping[str, np.ndarray], what: str) -> None:
    """The model passes ``onnx.checker``, ONNX Runtime loads it, and it gives finite float32 outputs on ``feed``."""
    try:
        onnx.checker.check_model(model)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        outputs = session.run(None, dict(feed))
    except Exception as exc:  # onnx and ONNX Runtime raise many unrelated types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"the {what} model does not load or run: {reason[:200]}") from None
    for arg, value in zip(session.get_outputs(), outputs):
        if value.dtype != np.float32:
            raise BundleError(f"the {what} model gives {value.dtype} output {arg.name!r}; bundle models give float32")
        if not np.isfinite(value).all():
            raise BundleError(f"the {what} model gives non-finite values in {arg.name!r} on a calibration crop")


def build_models(
    bundle: Bundle,
    precision: str,
    calibration: CalibrationCrops | None = None,
    method: str = "minmax",
    form: Int8Form = DEFAULT_INT8,
) -> dict[str, bytes]:
    """``{"template.<precision>.onnx": ..., "search.<precision>.onnx": ...}`` made from the bundle's fp32 models."""
    template_path, search_path = bundle.model_paths("fp32")
    converted = {}
    for kind, path in (("template", template_path), ("search", search_path)):
        model = onnx.load(path)
        if precision == "fp16":
            model = to_fp16(model)
        elif precision == "int8":
            if calibration is None:
                raise InputError("int8 needs calibration crops: give --calib with a sequence folder or a video")
            feeds = calibration.template_feeds if kind == "template" else calibration.search_feeds
            model = quantize_int8(model, feeds, method, form)
        else:
            raise InputError(f"there is no {precision} conversion for ONNX Runtime (it builds fp16 and int8)")
        model.producer_name = f"edgetrack build-engine ({precision})"
        _strip_doc_strings(model)
        sample = (calibration.template_feeds if kind == "template" else calibration.search_feeds)[0] if calibration else _zero_feed(model)
        check_runs(model, sample, f"{precision} {kind}")
        converted[f"{kind}.{precision}.onnx"] = model.SerializeToString()
    return converted


def _strip_doc_strings(model: onnx.ModelProto) -> None:
    """torch's exporter leaves a Python stack trace in every node's doc_string: 409 KB of NanoTrack v2's 1.8 MB
    search model. The converters copy them; they mean nothing at run time."""
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""


def _zero_feed(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {v.name: np.zeros([d.dim_value for d in v.type.tensor_type.shape.dim], np.float32) for v in model.graph.input}
