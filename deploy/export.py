"""Export a zoo model to a bundle: template.onnx + search.onnx, simplified, checked, and proven equal to torch.

The split is the model's own (``template(z)`` / ``track(x, zf)``) and so are the tensor names and the metadata:
geometry, input layout and hyper-parameters come from the model's config, the I/O shapes from the exported
files. A model whose ONNX Runtime outputs differ from torch's beyond the tolerance is refused and nothing is
written.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import onnxslim
import torch
from torch import nn

import edgetrack
from edgetrack.distill import checkpoint
from edgetrack.distill.models.base import SiameseModel
from edgetrack.runtime import geometry as geo
from edgetrack.runtime.bundle import FAMILY_OUTPUTS, SEARCH_INPUT, TEMPLATE_INPUT, Bundle, BundleMeta, ModelFiles, ModelIO
from edgetrack.runtime.crops import TargetState, search_crop, template_crop
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.errors import BundleError
from edgetrack.runtime.tracker import InputWriter

from .bundle_writer import write_bundle

DEFAULT_OPSET = 17
#: Refuse an export when |onnx - torch| > PARITY_ATOL + PARITY_RTOL * |torch| anywhere. Float32 round-off on
#: NanoTrack v1's ltrb outputs (up to ~900 px) reaches 5e-2 absolute between any two runtimes; a real export
#: error is orders of magnitude larger.
PARITY_ATOL = 1e-3
PARITY_RTOL = 1e-3
PARITY_SEARCH_CROPS = 4


class _Template(nn.Module):
    def __init__(self, model: SiameseModel):
        super().__init__()
        self.model = model

    def forward(self, z):
        return self.model.template(z)


class _Search(nn.Module):
    def __init__(self, model: SiameseModel):
        super().__init__()
        self.model = model

    def forward(self, x, *zf):
        outputs = self.model.track(x, *zf)
        return tuple(outputs[name] for name in FAMILY_OUTPUTS[self.model.config.family])


def _to_onnx(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str], opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    # torch.onnx.export puts the module back in the mode it found it in, and a fresh wrapper is in training mode,
    # which would leave the model's BatchNorm layers in training mode too.
    module.eval()
    # The TorchScript exporter: the dynamo one needs onnxscript, which the deploy extra does not carry. Its
    # warnings speak of its own passes (constant folding of strided slices...), and the parity check below is
    # what tells whether the export is right.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, input_names=inputs, output_names=outputs, opset_version=opset, dynamo=False)
    model = onnxslim.slim(onnx.load_from_string(buffer.getvalue()))
    model.producer_name = "edgetrack export"
    model.producer_version = edgetrack.__version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise BundleError(f"the exported {inputs[0]!r} model fails onnx.checker: {str(exc).splitlines()[0]}") from None
    return model


def _io(model: onnx.ModelProto) -> ModelIO:
    def shape(value):
        return tuple(d.dim_value for d in value.type.tensor_type.shape.dim)

    return ModelIO({v.name: shape(v) for v in model.graph.input}, {v.name: shape(v) for v in model.graph.output})


@dataclass(frozen=True)
class ParityCrops:
    """Network inputs for the parity check, and where they came from."""

    z: np.ndarray
    x: list[np.ndarray]
    origin: str


def real_crops(meta: BundleMeta, dataset: Path) -> ParityCrops:
    """An exemplar crop of the first sequence's first box and search crops around later boxes, as the tracker
    makes them (runtime crop, the model's input layout)."""
    data = load_dataset(dataset)
    if not data.sequences:
        raise BundleError(f"{dataset} holds no annotated sequence to take parity crops from")
    sequence = data.sequences[0]
    frames = list(sequence.frames())
    g = meta.geometry
    writer = InputWriter(meta)
    # The tracker pads every crop with its first frame's mean colour.
    fill = geo.mean_fill(frames[0])
    z = np.empty((1, 3, g.exemplar_size, g.exemplar_size), np.float32)
    writer.write(template_crop(frames[0], sequence.groundtruth[0], g, fill=fill), z[0])
    cropper = geo.Cropper(g.instance_size)
    factors = geo.siamfc_scale_factors(g.num_scales, g.scale_step)
    xs = []
    for index in np.linspace(1, len(frames) - 1, PARITY_SEARCH_CROPS).astype(int):
        state = TargetState.from_box(sequence.groundtruth[index])
        x = np.empty((g.num_scales, 3, g.instance_size, g.instance_size), np.float32)
        for i, factor in enumerate(factors):
            writer.write(search_crop(frames[index], state, g, scale=factor, fill=fill, cropper=cropper), x[i])
        xs.append(x)
    return ParityCrops(z=z, x=xs, origin=f"{sequence.name} of {dataset}")


def random_crops(meta: BundleMeta) -> ParityCrops:
    """Uniform pixels through the model's input layout, when no annotated data is at hand."""
    rng = np.random.default_rng(0)
    g, writer = meta.geometry, InputWriter(meta)

    def crop(size: int, batch: int) -> np.ndarray:
        out = np.empty((batch, 3, size, size), np.float32)
        for i in range(batch):
            writer.write(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), out[i])
        return out

    return ParityCrops(
        z=crop(g.exemplar_size, 1),
        x=[crop(g.instance_size, g.num_scales) for _ in range(PARITY_SEARCH_CROPS)],
        origin="uniform random pixels",
    )


def _check_finite(model: SiameseModel, runner: str, outputs: dict[str, np.ndarray], crops: ParityCrops) -> None:
    for name, value in outputs.items():
        if not np.isfinite(value).all():
            raise BundleError(
                f"{model.config.name}: {runner} gives NaN or inf in output {name!r} on {crops.origin} (NaN or inf weights?); "
                "the export is refused and nothing was written"
            )


def parity(model: SiameseModel, template: onnx.ModelProto, search: onnx.ModelProto, crops: ParityCrops) -> dict:
    """Run torch and ONNX Runtime (CPU, full optimisation, as the runtime runs it) on the same crops. NaN or inf in
    any output of either is refused outright: it would compare equal to nothing and pass any tolerance."""

    def session(proto):
        return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])

    feature_names = list(model.config.template_outputs)
    output_names = FAMILY_OUTPUTS[model.config.family]
    template_session, search_session = session(template), session(search)
    with torch.no_grad():
        zf = model.template_features(torch.from_numpy(crops.z))
        features = {name: f.numpy() for name, f in zip(feature_names, zf)}
        runs = [(features, dict(zip(feature_names, template_session.run(feature_names, {TEMPLATE_INPUT: crops.z}))))]
        for x in crops.x:
            outputs = model.track(torch.from_numpy(x), *zf)
            got = search_session.run(output_names, {SEARCH_INPUT: x, **features})
            runs.append(({name: outputs[name].numpy() for name in output_names}, dict(zip(output_names, got))))
    worst_abs = worst_rel = 0.0
    failed = False
    for expected, got in runs:
        _check_finite(model, "torch", expected, crops)
        _check_finite(model, "ONNX Runtime", got, crops)
        for name, reference in expected.items():
            diff = np.abs(reference - got[name])
            worst_abs = max(worst_abs, float(diff.max()))
            # relative to the tensor's own scale: element-wise ratios blow up on outputs that pass through zero
            worst_rel = max(worst_rel, float(diff.max() / max(float(np.abs(reference).max()), 1e-12)))
            failed |= bool((diff > PARITY_ATOL + PARITY_RTOL * np.abs(reference)).any())
    return {
        "reference": "torch (fp32, CPU)",
        "runner": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        "inputs": crops.origin,
        "max_abs_diff": worst_abs,
        "max_rel_diff": worst_rel,
        "tolerance": {"atol": PARITY_ATOL, "rtol": PARITY_RTOL},
        "passed": not failed,
    }


def load_model(name: str | None, weights: Path | None) -> SiameseModel:
    """The model to export: a preset with published weights, or a model trained here (its file records what it is)."""
    try:
        model = checkpoint.load_model(name, weights)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise BundleError(str(exc).splitlines()[0]) from None
    return model.eval()


def export_model(
    model: SiameseModel,
    out: Path,
    opset: int = DEFAULT_OPSET,
    parity_data: Path | None = None,
    force: bool = False,
    weights: Path | None = None,
) -> Bundle:
    """Export ``model`` to the bundle ``out`` and return it loaded; ``weights`` is recorded as its source."""
    model = model.eval()
    config = model.config
    z, x = model.example_crops()
    with torch.no_grad():
        zf = model.template_features(z)
    features = list(config.template_outputs)
    template = _to_onnx(_Template(model), (z,), [TEMPLATE_INPUT], features, opset)
    search = _to_onnx(_Search(model), (x, *zf), [SEARCH_INPUT, *features], list(FAMILY_OUTPUTS[config.family]), opset)
    meta = config.bundle_meta(
        template_io=_io(template),
        search_io=_io(search),
        models={"fp32": ModelFiles(template="template.onnx", search="search.onnx")},
        producer={
            "tool": "edgetrack export",
            "edgetrack": edgetrack.__version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "opset": opset,
            "weights": str(weights) if weights else None,
            "teacher": config.teacher,
        },
    )
    crops = real_crops(meta, parity_data) if parity_data else random_crops(meta)
    result = parity(model, template, search, crops)
    if not result["passed"]:
        raise BundleError(
            f"{config.name}: ONNX Runtime differs from torch by up to {result['max_abs_diff']:.2e} "
            f"({result['max_rel_diff']:.2e} relative) on {crops.origin}; the export is refused and nothing was written"
        )
    files = {"template.onnx": template.SerializeToString(), "search.onnx": search.SerializeToString()}
    return write_bundle(out, dataclasses.replace(meta, parity=result), files, force=force)
