"""Turn a published NanoTrack backbone/head ONNX pair into a bundle.

The published backbone is fixed at a 255 input. The bundle's template model is that backbone re-shaped to take
the 127 exemplar (its reshapes are size-independent, so only the declared shapes change); its search model is the
backbone at 255 with the head fused behind it, so a frame costs one inference call, with the template features
bound as the head's first input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx.compose
import onnxruntime as ort

import edgetrack
from edgetrack.runtime.bundle import (
    SEARCH_INPUT,
    TEMPLATE_INPUT,
    Bundle,
    BundleMeta,
    Geometry,
    InputLayout,
    ModelFiles,
    ModelIO,
)
from edgetrack.runtime.backends.base import InferenceBackend
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.compare import Comparison, Crops, compare, random_crops, real_crops
from edgetrack.runtime.errors import BundleError
from edgetrack.runtime.nanotrack_hyper import NANOTRACK_HYPER
from edgetrack.runtime.records import Tolerance

from .bundle_writer import write_bundle

EXEMPLAR_SIZE = 127
INSTANCE_SIZE = 255
STRIDE = 16
FEATURES = "zf"
#: Worst difference tolerated between the fused search model and the original pair run one after the other.
PARITY_TOLERANCE = Tolerance(atol=1e-4, rtol=0.0)


def _load(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist") from None
    except Exception as exc:  # onnx raises protobuf DecodeError, ValidationError and others
        raise BundleError(f"{path} is not a valid ONNX model ({type(exc).__name__}): {str(exc).splitlines()[0][:160]}") from None
    return model


def _single(values, what: str, path: Path):
    names = [v.name for v in values]
    if len(names) != 1:
        raise BundleError(f"{path} should have one {what}, it has {len(names)}: {names}")
    return values[0]


def _shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    return tuple(d.dim_value for d in value.type.tensor_type.shape.dim)


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new


def _with_input_size(model: onnx.ModelProto, size: int) -> onnx.ModelProto:
    """The same network declared for a ``size x size`` input, with every inferred shape recomputed."""
    resized = onnx.ModelProto()
    resized.CopyFrom(model)
    dims = resized.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = size
    del resized.graph.value_info[:]
    for output in resized.graph.output:
        for dim in output.type.tensor_type.shape.dim:
            dim.Clear()
    return onnx.shape_inference.infer_shapes(resized, strict_mode=True)


#: The published versions by the structure of their pair: feature channels, pixel-wise correlations in the head
#: (each a MatMul: v1 shares one between its cls and bbox branches, v2 gives each branch its own) and depth-wise
#: correlations (convolutions whose weights come from the template features: v3 only). v1 and v2 have the same
#: I/O shapes and near-identical backbones; their opsets (9 and 14) tell the published files apart, but a
#: re-export would change that, not the head.
PUBLISHED_LAYOUTS = {(48, 1, 0): "v1", (48, 2, 0): "v2", (96, 2, 2): "v3"}


def layout(backbone: onnx.ModelProto, head: onnx.ModelProto) -> tuple[int, int, int]:
    """(feature channels, pixel-wise correlations, depth-wise correlations) of a backbone/head pair."""
    constants = {t.name for t in head.graph.initializer} | {o for n in head.graph.node if n.op_type == "Constant" for o in n.output}
    pixelwise = sum(n.op_type == "MatMul" for n in head.graph.node)
    depthwise = sum(n.op_type == "Conv" and n.input[1] not in constants for n in head.graph.node)
    return _shape(backbone.graph.output[0])[1], pixelwise, depthwise


def _describe(backbone: onnx.ModelProto, head: onnx.ModelProto) -> str:
    channels, pixelwise, depthwise = layout(backbone, head)
    return f"{channels}-channel features, {pixelwise} pixel-wise and {depthwise} depth-wise correlation(s) in the head"


def detect_version(backbone: onnx.ModelProto, head: onnx.ModelProto) -> str | None:
    """The published version whose structure the pair has (see ``PUBLISHED_LAYOUTS``), or None."""
    return PUBLISHED_LAYOUTS.get(layout(backbone, head))


def resolve_version(given: str | None, backbone: onnx.ModelProto, head: onnx.ModelProto) -> str:
    """``--version`` when the files agree with it, else the detected one. A disagreement is refused: the
    hyper-parameters of one version are tuned for its own weights, not another's."""
    detected = detect_version(backbone, head)
    if given is None and detected is None:
        raise BundleError(f"these files match no published NanoTrack version ({_describe(backbone, head)}); give --version")
    if given is not None and detected is not None and given != detected:
        raise BundleError(
            f"--version {given} but these files are NanoTrack {detected} ({_describe(backbone, head)}); "
            f"drop --version or give the {given} files"
        )
    return given or detected


def build_models(backbone: onnx.ModelProto, head: onnx.ModelProto, paths: tuple[Path, Path]) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The bundle's template model (z -> zf) and fused search model (x, zf -> cls, loc)."""
    backbone_path, head_path = paths
    b_in = _single(backbone.graph.input, "input", backbone_path)
    b_out = _single(backbone.graph.output, "output", backbone_path)
    if _shape(b_in) != (1, 3, INSTANCE_SIZE, INSTANCE_SIZE):
        raise BundleError(f"{backbone_path} input is {_shape(b_in)}; a NanoTrack backbone takes (1, 3, 255, 255)")
    head_inputs = list(head.graph.input)
    if len(head_inputs) != 2 or len(head.graph.output) != 2:
        raise BundleError(f"{head_path} should take (template, search) features and give (cls, loc)")
    z_in, x_in = head_inputs
    cls_out, loc_out = head.graph.output

    template = _with_input_size(backbone, EXEMPLAR_SIZE)
    _rename(template.graph, b_in.name, TEMPLATE_INPUT)
    _rename(template.graph, b_out.name, FEATURES)
    if _shape(template.graph.output[0]) != _shape(z_in):
        raise BundleError(
            f"the backbone gives {_shape(template.graph.output[0])} on a 127 exemplar, "
            f"but {head_path} expects {_shape(z_in)}: these files are not a pair"
        )
    if _shape(b_out) != _shape(x_in):
        raise BundleError(f"the backbone gives {_shape(b_out)}, but {head_path} expects {_shape(x_in)} search features")

    search_backbone = onnx.compose.add_prefix(backbone, "backbone/")
    search = onnx.compose.merge_models(search_backbone, head, io_map=[("backbone/" + b_out.name, x_in.name)])
    _rename(search.graph, "backbone/" + b_in.name, SEARCH_INPUT)
    _rename(search.graph, z_in.name, FEATURES)
    _rename(search.graph, cls_out.name, "cls")
    _rename(search.graph, loc_out.name, "loc")
    for model in (template, search):
        model.producer_name = "edgetrack import-nanotrack"
        model.producer_version = edgetrack.__version__
        onnx.checker.check_model(model)
    return template, search


def _io(model: onnx.ModelProto) -> ModelIO:
    return ModelIO(
        inputs={v.name: _shape(v) for v in model.graph.input},
        outputs={v.name: _shape(v) for v in model.graph.output},
    )


class _PublishedPair(InferenceBackend):
    """The published backbone and head run one after the other (plain ONNX Runtime sessions, CPU): the reference
    the fused search model is measured against. Its template features come from the bundle's template model."""

    name = "the original pair"

    def __init__(self, template: onnx.ModelProto, backbone: onnx.ModelProto, head: onnx.ModelProto):
        def session(model: onnx.ModelProto):
            return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

        self._template, self._backbone, self._head = session(template), session(backbone), session(head)
        self._backbone_input = backbone.graph.input[0].name
        self._z_name, self._x_name = (v.name for v in head.graph.input)
        self.template_input = np.zeros((1, 3, EXEMPLAR_SIZE, EXEMPLAR_SIZE), np.float32)
        self.search_input = np.zeros((1, 3, INSTANCE_SIZE, INSTANCE_SIZE), np.float32)
        self._zf = np.zeros(0, np.float32)

    def run_template(self) -> None:
        (self._zf,) = self._template.run([FEATURES], {TEMPLATE_INPUT: self.template_input})

    def run_search(self) -> Mapping[str, np.ndarray]:
        features = self._backbone.run(None, {self._backbone_input: self.search_input})[0]
        cls, loc = self._head.run(None, {self._z_name: self._zf, self._x_name: features})
        return {"cls": cls, "loc": loc}

    def template_features(self) -> dict[str, np.ndarray]:
        return {FEATURES: self._zf.copy()}

    def close(self) -> None:
        self._template = self._backbone = self._head = None


def parity(
    models: tuple[onnx.ModelProto, onnx.ModelProto], pair: tuple[onnx.ModelProto, onnx.ModelProto], meta: BundleMeta, crops: Crops
) -> Comparison:
    """The bundle's template and fused search model (run as the runtime runs them) against the published pair, on
    the same crops. Only the search outputs are compared: both sides compute the template features with the same
    template model. Nothing is written: the bundle's models run from memory."""
    serialized = tuple(model.SerializeToString() for model in models)
    with _PublishedPair(models[0], *pair) as reference, OnnxRuntimeBackend(Bundle(Path("imported.etb"), meta), models=serialized) as fused:
        return compare(reference, fused, crops, PARITY_TOLERANCE, names=meta.search_io.outputs)


def _check_parity(comparison: Comparison) -> None:
    """Refuse a pair whose outputs hold NaN or inf (it would compare equal to nothing and pass any tolerance) or a
    fused model that differs from the pair beyond the tolerance."""
    broken = comparison.nonfinite()
    if broken is not None:
        runner, output = broken
        raise BundleError(f"{runner} gives NaN or inf in output {output!r} on {comparison.inputs} (NaN or inf weights?); nothing was written")
    if not comparison.passed:
        raise BundleError(
            f"the fused search model differs from the original pair by {comparison.max_abs:.2e} in output "
            f"{comparison.worst.name!r} on {comparison.inputs}; nothing was written"
        )


def import_nanotrack(
    backbone_path: Path, head_path: Path, out: Path, version: str | None = None, force: bool = False, parity_data: Path | None = None
) -> Bundle:
    """Make ``out`` (a ``.etb`` directory) from a published NanoTrack pair; returns the loaded bundle. Parity with
    the pair is measured on crops of the first sequence of ``parity_data``, or on random pixels without it."""
    backbone, head = _load(Path(backbone_path)), _load(Path(head_path))
    if version is not None and version not in NANOTRACK_HYPER:
        raise BundleError(f"unknown NanoTrack version {version!r} (choose from {', '.join(NANOTRACK_HYPER)})")
    template, search = build_models(backbone, head, (Path(backbone_path), Path(head_path)))
    version = resolve_version(version, backbone, head)
    template_io, search_io = _io(template), _io(search)
    score_size = search_io.outputs["cls"][-1]
    opset = next(o.version for o in search.opset_import if o.domain in ("", "ai.onnx"))
    meta = BundleMeta(
        name=f"nanotrack-{version}",
        family="nanotrack",
        geometry=Geometry(
            exemplar_size=EXEMPLAR_SIZE,
            instance_size=INSTANCE_SIZE,
            stride=STRIDE,
            score_size=score_size,
            context_amount=0.5,
        ),
        # NanoTrack was trained on BGR crops of raw 0-255 pixels, as pysot reads them with cv2.
        input=InputLayout(color="BGR", scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        hyper=NANOTRACK_HYPER[version],
        template_io=template_io,
        search_io=search_io,
        models={"fp32": ModelFiles(template="template.onnx", search="search.onnx")},
        files={},
        producer={
            "tool": "edgetrack import-nanotrack",
            "edgetrack": edgetrack.__version__,
            "onnx": onnx.__version__,
            "torch": None,
            "opset": opset,
            "source": [Path(backbone_path).name, Path(head_path).name],
        },
    )
    crops = real_crops(meta, parity_data) if parity_data else random_crops(meta)
    comparison = parity((template, search), (backbone, head), meta, crops)
    _check_parity(comparison)
    record = comparison.record(reference="original backbone + head (onnxruntime)", runner=f"onnxruntime {ort.__version__} CPUExecutionProvider")
    files = {"template.onnx": template.SerializeToString(), "search.onnx": search.SerializeToString()}
    return write_bundle(Path(out), dataclasses.replace(meta, parity=record), files, force=force)
