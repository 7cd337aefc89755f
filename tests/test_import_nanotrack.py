"""import-nanotrack on the real published pairs, and on pairs that must be refused."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import nanotrack_pair

from edgetrack.deploy.import_nanotrack import detect_version, import_nanotrack
from edgetrack.runtime.errors import BundleError

TUNED = {  # ../shared/data/README.md (v2, v3) and the upstream v1 config
    "v1": (0.462, 0.148, 0.390),
    "v2": (0.490, 0.150, 0.385),
    "v3": (0.455, 0.138, 0.348),
}


@pytest.mark.parametrize("version, channels, score", [("v1", 48, 16), ("v2", 48, 16), ("v3", 96, 15)])
def test_bundle_metadata(nanotrack_bundles, version, channels, score):
    meta = nanotrack_bundles[version].meta
    assert meta.family == "nanotrack" and meta.name == f"nanotrack-{version}"
    assert meta.geometry.score_size == score and meta.geometry.stride == 16
    assert meta.template_io.inputs == {"z": (1, 3, 127, 127)}
    assert meta.template_io.outputs == {"zf": (1, channels, 8, 8)}
    assert meta.search_io.outputs == {"cls": (1, 2, score, score), "loc": (1, 4, score, score)}
    h = meta.hyper
    assert (h.window_influence, h.penalty_k, h.lr) == TUNED[version]
    assert meta.input.color == "BGR" and meta.input.is_identity
    assert meta.parity.max_abs_diff <= 1e-4


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_version_is_detected_from_the_files(version):
    backbone, head = (onnx.load(str(p)) for p in nanotrack_pair(version))
    assert detect_version(backbone, head) == version


def test_template_model_is_the_backbone_at_127(nanotrack_bundles):
    """The template model equals the published backbone run on a 127 crop (its input shape freed)."""
    backbone_path, _ = nanotrack_pair("v2")
    model = onnx.load(str(backbone_path))
    for dim in (2, 3):
        model.graph.input[0].type.tensor_type.shape.dim[dim].dim_param = "size"
    del model.graph.value_info[:]
    for dim in model.graph.output[0].type.tensor_type.shape.dim:
        dim.dim_param = "any"
    free = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    bundle = nanotrack_bundles["v2"]
    template = ort.InferenceSession(str(bundle.path / "template.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(1).uniform(0, 255, (1, 3, 127, 127)).astype(np.float32)
    expected = free.run(None, {model.graph.input[0].name: z})[0]
    np.testing.assert_allclose(template.run(None, {"z": z})[0], expected, atol=1e-4)


def test_mismatched_pair_is_refused_and_nothing_written(tmp_path):
    backbone, _ = nanotrack_pair("v2")
    _, head = nanotrack_pair("v3")
    out = tmp_path / "bad.etb"
    with pytest.raises(BundleError, match="not a pair|expects"):
        import_nanotrack(backbone, head, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_truncated_onnx_is_refused(tmp_path):
    backbone, head = nanotrack_pair("v2")
    broken = tmp_path / "backbone.onnx"
    broken.write_bytes(backbone.read_bytes()[:5000])
    with pytest.raises(BundleError, match="not a valid ONNX model"):
        import_nanotrack(broken, head, tmp_path / "x.etb")


def test_existing_bundle_needs_force(tmp_path):
    out = tmp_path / "v2.etb"
    import_nanotrack(*nanotrack_pair("v2"), out, version="v2")
    with pytest.raises(BundleError, match="--force"):
        import_nanotrack(*nanotrack_pair("v2"), out, version="v2")
    replaced = import_nanotrack(*nanotrack_pair("v1"), out, version="v1", force=True)
    assert json.loads((out / "edgetrack.json").read_text())["name"] == "nanotrack-v1" == replaced.meta.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v2.etb"]  # no staging or retired folders left
