"""edgetrack export: a zoo model becomes a bundle the runtime tracks with, equal to torch, or nothing at all."""

from __future__ import annotations

import pytest

# Export needs torch; the Python 3.10 run of `make test-py310` has none (its CPU wheel is for 3.11).
pytest.importorskip("torch", reason="torch is not installed in this environment")

import subprocess
import sys

import cv2
import onnx
import torch

from edgetrack.deploy import export
from edgetrack.deploy.export import export_model, load_model
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.bundle import load_bundle
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.errors import BundleError
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.tracker import SiameseTracker


def aucs(bundle, data):
    tracker = SiameseTracker(bundle.meta, OnnxRuntimeBackend(bundle))
    return {s.name: track_sequence(tracker, s).scores.auc for s in load_dataset(data / "sequences").sequences}


def test_nanotrack_v2_from_its_pth_tracks_like_the_imported_pair(nanotrack_bundles, data, tmp_path):
    weights = data / "models" / "nanotrack" / "v2" / "nanotrackv2.pth"
    exported = export_model(load_model("nanotrack-v2", weights), tmp_path / "v2.etb", parity_data=data / "sequences")
    assert exported.meta.parity.passed and exported.meta.parity.inputs.startswith("Crossing")
    assert exported.meta.hyper == nanotrack_bundles["v2"].meta.hyper
    assert exported.meta.geometry == nanotrack_bundles["v2"].meta.geometry
    got, expected = aucs(exported, data), aucs(nanotrack_bundles["v2"], data)
    assert set(got) == {"Crossing", "bag", "dat"}
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=0.005), name


@pytest.mark.parametrize(
    "name",
    [
        "siamfc-alexnet", "siamfc-alexnet-s50",
        "siamrpn-alexnet", "siamrpn-alexnet-s50",
        "siamrpn-big", "siamrpn-big-s25",
        "nanotrack-v3-s50",
    ],
)
def test_every_family_exports_to_a_bundle_the_runtime_runs(name, data, tmp_path):
    torch.manual_seed(0)
    bundle = export_model(load_model(name, None), tmp_path / f"{name}.etb", parity_data=data / "sequences")
    for file in ("template.onnx", "search.onnx"):
        onnx.checker.check_model(onnx.load(str(bundle.path / file)), full_check=True)
    assert bundle.meta.parity.max_rel_diff < 1e-4
    reloaded = load_bundle(bundle.path)
    tracker = SiameseTracker(reloaded.meta, OnnxRuntimeBackend(reloaded))
    frames = sorted((data / "sequences" / "bag" / "color").glob("*.jpg"))[:3]
    tracker.init(cv2.imread(str(frames[0])), (292.23, 128.36, 145.96, 132.47))
    for frame in frames[1:]:
        result = tracker.update(cv2.imread(str(frame)))
        assert all(v == v for v in result.box)  # an untrained model still gives a finite, decodable box


def test_students_export_without_template_dependent_convolutions(tmp_path):
    """The export-friendly default: no Conv in the search model takes its weights from a model input."""
    bundle = export_model(load_model("siamrpn-alexnet-s50", None), tmp_path / "s.etb")
    search = onnx.load(str(bundle.path / "search.onnx"))
    inputs = {i.name for i in search.graph.input}
    produced_by_inputs = set(inputs)
    for node in search.graph.node:  # every tensor computed from the inputs alone, with no initializer
        if node.input and all(i in produced_by_inputs for i in node.input if i):
            produced_by_inputs.update(node.output)
    assert not [n for n in search.graph.node if n.op_type == "Conv" and n.input[1] in produced_by_inputs]
    assert bundle.meta.parity.inputs == "uniform random pixels"


def test_failed_parity_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "PARITY_ATOL", -1.0)  # every difference, even zero, now fails
    with pytest.raises(BundleError, match="export is refused and nothing was written"):
        export_model(load_model("nanotrack-v2-s50", None), tmp_path / "x.etb")
    assert list(tmp_path.iterdir()) == []


def test_weights_of_another_model_are_one_line(data, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "edgetrack.cli", "export", "--model", "nanotrack-v2",
         "--weights", str(data / "models" / "nanotrack" / "v3" / "nanotrackv3.pth"), "-o", str(tmp_path / "x.etb")],
        capture_output=True, text=True,
    )
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1 and "does not fit nanotrack-v2" in lines[0], run.stderr
    assert not (tmp_path / "x.etb").exists()
