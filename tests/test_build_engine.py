"""edgetrack build-engine: fp16 and calibrated int8 for ONNX Runtime on real NanoTrack v2, the accuracy gate that
leaves a bundle untouched when it fails, calibration crops that are the runtime's own, and TensorRT's absence."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgetrack.deploy.calibration import sample_calibration
from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.bundle import load_bundle, sha256_file
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.tracker import SiameseTracker

#: fp16 outputs may differ from fp32 by at most this fraction of the fp32 output's largest magnitude.
FP16_TOLERANCE = 1e-2


def edgetrack(*args):
    return subprocess.run([sys.executable, "-m", "edgetrack.cli", *map(str, args)], capture_output=True, text=True)


#: The command line with an accuracy gate that refuses every candidate, measured as usual.
FAILING_GATE = "import edgetrack.deploy.build_engine as build; build.gate_passes = lambda record: False; from edgetrack.cli import main; main()"


def edgetrack_failing_gate(*args):
    return subprocess.run([sys.executable, "-c", FAILING_GATE, *map(str, args)], capture_output=True, text=True)


def error_line(run) -> str:
    """The one error line of a failed run: progress labels may come before it, a traceback never."""
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert run.returncode != 0 and len(errors) == 1 and lines[-1] == errors[0], (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_bundle(bundle, where: Path) -> Path:
    return Path(shutil.copytree(bundle.path, where / bundle.path.name))


@pytest.fixture(scope="module")
def built(nanotrack_bundles, data, tmp_path_factory):
    """NanoTrack v2 with fp16 (gated on Crossing) and int8 (calibrated and gated on Crossing + dat) built."""
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path_factory.mktemp("build"))
    before = snapshot(path)
    sequences = data / "sequences"
    fp16 = edgetrack("build-engine", path, "--precision", "fp16", "--eval", sequences / "Crossing")
    int8 = edgetrack(
        "build-engine", path, "--precision", "int8",
        "--calib", sequences / "Crossing", "--calib", sequences / "dat", "--calib-frames", 40,
    )
    return SimpleNamespace(path=path, before=before, fp16=fp16, int8=int8)


def test_fp16_and_int8_enter_the_bundle_with_their_accuracy(built):
    assert built.fp16.returncode == 0, built.fp16.stderr
    assert built.int8.returncode == 0, built.int8.stderr
    assert "accuracy gate passed" in built.int8.stdout
    bundle = load_bundle(built.path)
    meta = bundle.meta
    assert {p: (f.template, f.search) for p, f in meta.models.items()} == {
        "fp32": ("template.onnx", "search.onnx"),
        "fp16": ("template.fp16.onnx", "search.fp16.onnx"),
        "int8": ("template.int8.onnx", "search.int8.onnx"),
    }
    for name, digest in meta.files.items():
        assert sha256_file(built.path / name) == digest, name
    for name in ("template.onnx", "search.onnx"):
        assert (built.path / name).read_bytes() == built.before[name]
    for name in ("template", "search"):
        assert (built.path / f"{name}.int8.onnx").stat().st_size <= 0.35 * len(built.before[f"{name}.onnx"])

    fp16, int8 = meta.accuracy["fp16"], meta.accuracy["int8"]
    assert [s.sequence for s in fp16.sequences] == ["Crossing"]
    assert [s.sequence for s in int8.sequences] == ["Crossing", "dat"]
    for record in (fp16, int8):
        assert record.backend == "onnxruntime"
        assert record.drop <= 0.02
        assert record.drop == pytest.approx(record.fp32_auc - record.auc, abs=1e-3)
        assert record.fp32_auc > 0.7
        assert [o.name for o in record.parity.outputs] == ["zf", "cls", "loc"]
        assert record.parity.inputs.startswith("Crossing of ") and record.parity.reference == "fp32 (onnxruntime)"
    assert fp16.parity.max_rel_diff <= FP16_TOLERANCE
    calibration = meta.calibration
    assert len(calibration["fingerprint"]) == 64
    assert calibration["search_feeds"] == 40 and calibration["method"] == "minmax"
    assert [s["sequence"] for s in calibration["sequences"]] == ["Crossing", "dat"]


def test_eval_runs_the_int8_build(built, data, tmp_path):
    run = edgetrack("eval", built.path, "--precision", "int8", "--dataset", data / "sequences" / "Crossing", "--out", tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["precision"] == "int8"
    assert summary["mean"]["auc"] == pytest.approx(load_bundle(built.path).meta.accuracy["int8"].sequences[0].auc, abs=1e-3)


def test_fp16_keeps_float32_io_and_tracks_close_to_fp32(built, data):
    model = onnx.load(built.path / "search.fp16.onnx")
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, value.name
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    producers = {out: node for node in model.graph.node for out in node.output}
    (exp,) = [n for n in model.graph.node if n.op_type == "Exp"]
    cast = producers[exp.input[0]]
    assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT

    bundle = load_bundle(built.path)
    (seq,) = load_dataset(data / "sequences" / "Crossing").sequences
    frames = seq.frames()
    first, second = next(frames), next(frames)
    runners = {p: open_backend(bundle, p, backend="onnxruntime") for p in ("fp32", "fp16")}
    trackers = {p: SiameseTracker(bundle.meta, r) for p, r in runners.items()}
    for tracker in trackers.values():
        tracker.init(first, seq.groundtruth[0])
    trackers["fp32"].update(second)
    np.copyto(runners["fp16"].search_input, runners["fp32"].search_input)
    expected, got = runners["fp32"].run_search(), runners["fp16"].run_search()
    for name in expected:
        assert np.abs(got[name] - expected[name]).max() <= FP16_TOLERANCE * np.abs(expected[name]).max(), name


def test_failed_gate_leaves_the_bundle_byte_identical(nanotrack_bundles, data, tmp_path):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    before = snapshot(path)
    run = edgetrack_failing_gate("build-engine", path, "--precision", "fp16", "--eval", data / "sequences" / "Crossing")
    line = error_line(run)
    assert "fp16" in line and "fp32" in line and "unchanged" in line
    assert len([word for word in line.split() if word.startswith("0.")]) >= 2  # both AUCs
    assert snapshot(path) == before


def test_calibration_crops_are_what_the_fp32_tracker_feeds(nanotrack_bundles, data):
    bundle = nanotrack_bundles["v2"]
    source = data / "sequences" / "Crossing"
    crops = sample_calibration(bundle, [source], frames=3)
    (described,) = crops.description["sequences"]
    assert len(crops.search_feeds) == 3 and len(crops.template_feeds) == 4
    assert set(crops.search_feeds[0]) == {"x", "zf"} and set(crops.template_feeds[0]) == {"z"}

    (sequence,) = load_dataset(source).sequences
    runner = open_backend(bundle, "fp32", backend="onnxruntime")
    tracker = SiameseTracker(bundle.meta, runner)
    frames = sequence.frames()
    tracker.init(next(frames), sequence.groundtruth[0])
    assert np.array_equal(crops.template_feeds[0]["z"], runner.template_input)
    template = ort.InferenceSession(str(bundle.model_paths("fp32")[0]), providers=["CPUExecutionProvider"])
    (zf,) = template.run(None, {"z": runner.template_input})
    for _ in range(described["sampled"][0]):
        tracker.update(next(frames))
    assert np.array_equal(crops.search_feeds[0]["x"], runner.search_input)
    np.testing.assert_allclose(crops.search_feeds[0]["zf"], zf, rtol=1e-5, atol=1e-5)

    assert sample_calibration(bundle, [source], frames=3).fingerprint == crops.fingerprint
    assert sample_calibration(bundle, [source], frames=4).fingerprint != crops.fingerprint
    assert sample_calibration(bundle, [source], frames=3, seed=1).fingerprint != crops.fingerprint


def test_tensorrt_build_is_gated_and_installed_whole(nanotrack_bundles, data, tmp_path, monkeypatch):
    """The TensorRT path around the builder, with stand-in engines that track exactly like the fp32 models."""
    import edgetrack.deploy.build_engine as build
    import edgetrack.deploy.tensorrt_build as tensorrt_build
    from edgetrack.runtime.backends import tensorrt

    def fake_build(bundle, precision, calibration, workspace_mib, timing_cache, note=None):
        engines = tensorrt.engine_paths(bundle, precision)
        for engine in engines:
            engine.write_bytes(b"engine")
            tensorrt.sidecar_path(engine).write_text("{}")
        return engines

    monkeypatch.setattr(tensorrt, "machine_fingerprint", lambda: None)
    monkeypatch.setattr(tensorrt_build, "build_tensorrt_engines", fake_build)
    monkeypatch.setattr(build, "open_backend", lambda bundle, precision, backend, device: open_backend(bundle, "fp32", backend="onnxruntime"))
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    before = snapshot(path)
    crossing = [data / "sequences" / "Crossing"]
    with monkeypatch.context() as failing, pytest.raises(build.AccuracyGateError):
        failing.setattr(build, "gate_passes", lambda record: False)
        build.build_engine(path, "fp16", backend="tensorrt", eval_sources=crossing)
    assert snapshot(path) == before

    report = build.build_engine(path, "fp16", backend="tensorrt", eval_sources=crossing)
    names = ["template.fp16.engine", "template.fp16.engine.json", "search.fp16.engine", "search.fp16.engine.json"]
    assert [p.name for p in report.files] == names
    after = snapshot(path)
    assert all(after[name] == content for name, content in before.items() if name != "edgetrack.json")
    assert set(after) - set(before) == set(names)
    record = load_bundle(path).meta.accuracy["fp16"]
    assert record.backend == "tensorrt" and record.drop == 0


def test_tensorrt_without_tensorrt_is_one_line(nanotrack_bundles, data, tmp_path):
    from edgetrack.runtime.backends.tensorrt import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT and a CUDA GPU are present on this machine")
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    run = edgetrack("build-engine", path, "--precision", "fp16", "--backend", "tensorrt", "--eval", data / "sequences" / "Crossing")
    assert "TensorRT" in error_line(run)


def test_bad_input_is_one_line(nanotrack_bundles, data, tmp_path):
    bundle = nanotrack_bundles["v2"].path
    assert "--calib" in error_line(edgetrack("build-engine", bundle, "--precision", "int8", "--backend", "onnxruntime"))
    assert "--eval" in error_line(edgetrack("build-engine", bundle, "--precision", "fp16", "--backend", "onnxruntime"))
    assert "not an edgetrack bundle" in error_line(edgetrack("build-engine", tmp_path, "--precision", "fp16", "--eval", data / "sequences"))

    unreadable = tmp_path / "unreadable"
    (unreadable / "img").mkdir(parents=True)
    for name in ("0001.jpg", "0002.jpg"):
        (unreadable / "img" / name).write_bytes(b"not a jpeg")
    (unreadable / "groundtruth_rect.txt").write_text("10,10,20,20\n10,10,20,20\n")
    copy = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    line = error_line(edgetrack("build-engine", copy, "--precision", "int8", "--backend", "onnxruntime", "--calib", unreadable))
    assert "0001.jpg" in line

    run = edgetrack("build-engine", bundle, "--precision", "fp32", "--backend", "onnxruntime")
    assert run.returncode == 0 and "nothing to build" in run.stdout


def test_help_has_an_example():
    run = edgetrack("build-engine", "--help")
    assert run.returncode == 0 and "Example" in run.stdout and "--calib-method" in run.stdout
