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
from pathlib import Path

import onnx
import onnxruntime as ort
import onnxslim
import torch
from torch import nn

import edgetrack
from edgetrack.defaults import OPSET
from edgetrack.distill import checkpoint
from edgetrack.distill.models.base import SiameseModel
from edgetrack.distill.validate import TorchBackend
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.bundle import SEARCH_INPUT, TEMPLATE_INPUT, Bundle, BundleMeta, ModelFiles, ModelIO
from edgetrack.runtime.compare import Comparison, Crops, compare, random_crops, real_crops
from edgetrack.runtime.errors import BundleError
from edgetrack.runtime.records import Tolerance

from .bundle_writer import write_bundle

#: Refuse an export when |onnx - torch| > PARITY_ATOL + PARITY_RTOL * |torch| anywhere. Float32 round-off on
#: NanoTrack v1's ltrb outputs (up to ~900 px) reaches 5e-2 absolute between any two runtimes; a real export
#: error is orders of magnitude larger.
PARITY_ATOL = 1e-3
PARITY_RTOL = 1e-3


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
        return tuple(outputs[name] for name in self.model.config.spec.outputs)


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


def parity(model: SiameseModel, template: onnx.ModelProto, search: onnx.ModelProto, meta: BundleMeta, crops: Crops) -> Comparison:
    """torch against the exported models run as the runtime runs them (ONNX Runtime on the CPU), on the same
    crops, with the export's tolerance. Nothing is written: the models run from memory."""
    models = (template.SerializeToString(), search.SerializeToString())
    with TorchBackend(model) as reference, OnnxRuntimeBackend(Bundle(Path("exported.etb"), meta), models=models) as exported:
        return compare(reference, exported, crops, Tolerance(PARITY_ATOL, PARITY_RTOL))


def _check_parity(name: str, comparison: Comparison) -> None:
    """Refuse an export whose outputs hold NaN or inf (it would compare equal to nothing and pass any tolerance)
    or differ from torch beyond the tolerance."""
    refused = "the export is refused and nothing was written"
    broken = comparison.nonfinite()
    if broken is not None:
        runner, output = broken
        raise BundleError(f"{name}: {runner} gives NaN or inf in output {output!r} on {comparison.inputs} (NaN or inf weights?); {refused}")
    if not comparison.passed:
        worst = comparison.worst
        raise BundleError(
            f"{name}: ONNX Runtime differs from torch by up to {comparison.max_abs:.2e} ({comparison.max_rel:.2e} relative), "
            f"most in output {worst.name!r}, on {comparison.inputs}; {refused}"
        )


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
    opset: int = OPSET,
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
    search = _to_onnx(_Search(model), (x, *zf), [SEARCH_INPUT, *features], list(config.spec.outputs), opset)
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
    comparison = parity(model, template, search, meta, crops)
    _check_parity(config.name, comparison)
    record = comparison.record(reference="torch (fp32, CPU)", runner=f"onnxruntime {ort.__version__} CPUExecutionProvider")
    files = {"template.onnx": template.SerializeToString(), "search.onnx": search.SerializeToString()}
    return write_bundle(out, dataclasses.replace(meta, parity=record), files, force=force)
