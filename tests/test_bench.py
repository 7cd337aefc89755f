"""edgetrack bench: cells built where missing and scored as eval scores them, the ❎ gate row with the rejected
candidate's numbers, ❌ rows with their reason, the cv2.TrackerNano reference row, its files, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edgetrack.deploy.bench import OpenCVNanoCompare, plan_bench, run_bench
from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.bundle import load_bundle
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.metrics import ope_scores
from edgetrack.runtime.tracker import SiameseTracker

from conftest import cut_sequence, nanotrack_pair
from test_build_engine import edgetrack_failing_gate, error_line
from test_cli import edgetrack

#: The first frames of Crossing: long enough to score, short enough to bench many times in a few seconds.
SHORT_FRAMES = 40
CELL_KEYS = {"backend", "precision", "status", "reason", "size_mb", "auc", "ms_per_frame", "fps", "built", "sequences", "fps_rounds"}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def copy_bundle(bundle, where: Path) -> Path:
    return Path(shutil.copytree(bundle.path, where / bundle.path.name))


def cells_by_key(report) -> dict:
    return {(c["backend"], c["precision"]): c for c in report["cells"]}


@pytest.fixture(scope="module")
def short(data, tmp_path_factory) -> Path:
    """Crossing cut to its first frames, as an OTB folder."""
    return cut_sequence(data / "sequences" / "Crossing", "img", "groundtruth_rect.txt", SHORT_FRAMES, tmp_path_factory.mktemp("short") / "Crossing")


@pytest.fixture(scope="module")
def benched(nanotrack_bundles, short, tmp_path_factory):
    """`edgetrack bench` on a copy of NanoTrack v2 that holds fp32 only, with both backends and the OpenCV row."""
    root = tmp_path_factory.mktemp("bench")
    path = copy_bundle(nanotrack_bundles["v2"], root)
    out = root / "out"
    run = edgetrack(
        "bench", path, "--dataset", short, "--precisions", "fp32,fp16",
        "--backends", "onnxruntime,tensorrt", "--compare", "opencv-nano", "--rounds", 2, "--out", out,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "bench.json").read_text())
    return SimpleNamespace(path=path, out=out, run=run, report=report, cells=cells_by_key(report))


def test_fp32_cell_scores_what_the_runtime_tracker_scores(benched, short):
    (sequence,) = load_dataset(short).sequences
    bundle = load_bundle(benched.path)
    runner = open_backend(bundle, "fp32", backend="onnxruntime")
    expected = track_sequence(SiameseTracker(bundle.meta, runner), sequence).scores.auc
    runner.close()
    cell = benched.cells["onnxruntime", "fp32"]
    assert cell["status"] == "ok" and not cell["built"]
    assert cell["auc"] == pytest.approx(expected, abs=1e-9)
    assert cell["sequences"] == {"Crossing": pytest.approx(expected, abs=1e-9)}
    assert cell["fps"] > 0 and cell["ms_per_frame"] == pytest.approx(1000 / cell["fps"])
    # Two timed rounds; with two values the median is their mean.
    assert len(cell["fps_rounds"]) == 2 and cell["fps"] == pytest.approx(sum(cell["fps_rounds"]) / 2)
    files = [benched.path / "template.onnx", benched.path / "search.onnx"]
    assert cell["size_mb"] == pytest.approx(sum(p.stat().st_size for p in files) / 1e6)


def test_missing_fp16_is_built_into_the_bundle(benched):
    cell = benched.cells["onnxruntime", "fp16"]
    assert cell["status"] == "ok" and cell["built"]
    meta = load_bundle(benched.path).meta
    assert "fp16" in meta.models
    assert cell["auc"] == pytest.approx(meta.accuracy["fp16"].auc, abs=1e-4)
    files = [benched.path / "template.fp16.onnx", benched.path / "search.fp16.onnx"]
    assert cell["size_mb"] == pytest.approx(sum(p.stat().st_size for p in files) / 1e6)
    assert "bench: building fp16 for onnxruntime" in benched.run.stderr


def test_tensorrt_cells_fail_with_the_reason(benched):
    from edgetrack.runtime.backends.tensorrt import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT and a CUDA GPU are present on this machine")
    for precision in ("fp32", "fp16"):
        cell = benched.cells["tensorrt", precision]
        assert cell["status"] == "build_failed" and "TensorRT" in cell["reason"] and "\n" not in cell["reason"]
        assert cell["auc"] is None and cell["fps"] is None and cell["size_mb"] is None
    assert not list(benched.path.glob("*.engine*"))


def test_opencv_row_scores_what_tracker_nano_scores(benched, short):
    (sequence,) = load_dataset(short).sequences
    backbone, head = nanotrack_pair("v2")
    params = cv2.TrackerNano_Params()
    params.backbone, params.neckhead = str(backbone), str(head)
    tracker = cv2.TrackerNano_create(params)
    frames = sequence.frames()
    tracker.init(next(frames), tuple(int(round(v)) for v in sequence.groundtruth[0]))
    boxes = [sequence.groundtruth[0], *(tracker.update(frame)[1] for frame in frames)]
    expected = ope_scores(np.asarray(boxes, float), sequence.groundtruth).auc

    row = benched.report["reference"]
    assert row["backend"] == "opencv-nano" and row["status"] == "ok"
    assert row["auc"] == pytest.approx(expected, abs=1e-9)
    assert row["size_mb"] == pytest.approx((backbone.stat().st_size + head.stat().st_size) / 1e6)
    assert str(backbone.name) in row["reason"]


def test_report_files_and_printed_table(benched):
    report = benched.report
    assert set(report) == {
        "bundle", "bundle_path", "dataset", "sequences", "max_auc_drop", "calib", "threads", "environment", "cells", "reference", "rounds"
    }
    assert report["rounds"] == 2
    assert report["bundle"] == "nanotrack-v2" and report["sequences"] == [{"name": "Crossing", "frames": SHORT_FRAMES}]
    assert [(c["backend"], c["precision"]) for c in report["cells"]] == [
        ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("tensorrt", "fp32"), ("tensorrt", "fp16")
    ]
    assert all(set(c) == CELL_KEYS for c in [*report["cells"], report["reference"]])

    markdown = (benched.out / "bench.md").read_text().splitlines()
    assert "| backend | precision | status | size MB | AUC | ms/frame | FPS | note |" in markdown
    fp32 = benched.cells["onnxruntime", "fp32"]
    assert f"| onnxruntime | fp32 | ✅ ok | {fp32['size_mb']:.2f} | {fp32['auc']:.3f} | {fp32['ms_per_frame']:.2f} | {fp32['fps']:.0f} |  |" in markdown
    rows = [line for line in markdown if line.startswith(("| onnxruntime |", "| tensorrt |", "| opencv-nano |"))]
    assert len(rows) == 2 * 5  # the main table and the per-sequence AUC table

    printed = benched.run.stdout.splitlines()
    assert printed[0].split() == ["backend", "precision", "status", "size", "MB", "AUC", "ms/frame", "FPS"]
    assert any(line.startswith("onnxruntime") and "✅ ok" in line and f"{fp32['auc']:.3f}" in line for line in printed)
    trt = [line for line in printed if line.startswith("tensorrt")]
    assert len(trt) == 2 and all("❌" in line and "TensorRT" in line for line in trt)


def test_held_precisions_are_used_as_they_are(benched, short, tmp_path):
    before = snapshot(benched.path)
    plan = plan_bench(short, tmp_path, precisions=["fp16"])
    (cell,) = run_bench(benched.path, plan).cells
    assert cell.status == "ok" and not cell.built
    assert cell.auc == pytest.approx(benched.cells["onnxruntime", "fp16"]["auc"], abs=1e-9)
    assert snapshot(benched.path) == before


def test_impossible_gate_shows_the_rejected_candidate(benched, nanotrack_bundles, short, tmp_path):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    before = snapshot(path)
    run = edgetrack_failing_gate("bench", path, "--dataset", short, "--precisions", "fp16", "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    (cell,) = json.loads((tmp_path / "out" / "bench.json").read_text())["cells"]
    assert cell["status"] == "gate_failed" and cell["built"]
    assert "accuracy gate" in cell["reason"] and "0.02" in cell["reason"]
    # The candidate is the very fp16 conversion that passed the gate in the other bundle.
    kept = benched.cells["onnxruntime", "fp16"]
    assert cell["auc"] == pytest.approx(kept["auc"], abs=1e-9)
    assert cell["size_mb"] == pytest.approx(kept["size_mb"])
    assert cell["fps"] > 0
    assert snapshot(path) == before
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("onnxruntime")]
    assert "❎" in line and f"{kept['auc']:.3f}" in line and "accuracy gate" in line


def test_opencv_row_for_nanotrack_v3_says_why_it_cannot_run(nanotrack_bundles, short, tmp_path):
    plan = plan_bench(short, tmp_path, precisions=["fp32"], compare=OpenCVNanoCompare())
    row = run_bench(nanotrack_bundles["v3"].path, plan).reference
    assert row.status == "build_failed" and row.auc is None
    assert "nanotrack_backbone.onnx" in row.reason and "v1/v2" in row.reason


def test_opencv_row_with_an_explicit_pair(nanotrack_bundles, short, tmp_path):
    v2 = nanotrack_bundles["v2"].path
    found = run_bench(v2, plan_bench(short, tmp_path, precisions=["fp32"], compare=OpenCVNanoCompare())).reference
    given = run_bench(v2, plan_bench(short, tmp_path, precisions=["fp32"], compare=OpenCVNanoCompare(nanotrack_pair("v2")))).reference
    assert given.status == "ok" and given.auc == found.auc
    missing = OpenCVNanoCompare((tmp_path / "backbone.onnx", nanotrack_pair("v2")[1]))
    row = run_bench(v2, plan_bench(short, tmp_path, precisions=["fp32"], compare=missing)).reference
    assert row.status == "build_failed" and "backbone.onnx not found" in row.reason


def test_model_preset_is_exported_then_benched(benched, data, short, tmp_path):
    pytest.importorskip("torch")
    weights = data / "models" / "nanotrack" / "v2" / "nanotrackv2.pth"
    run = edgetrack(
        "bench", "--model", "nanotrack-v2", "--weights", weights, "--dataset", short, "--precisions", "fp32",
        "--compare", "opencv-nano", "--out", tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert load_bundle(tmp_path / "nanotrack-v2.etb").meta.producer["tool"] == "edgetrack export"
    report = json.loads((tmp_path / "bench.json").read_text())
    (cell,) = report["cells"]
    # The export of the .pth tracks exactly like the imported pair.
    assert cell["auc"] == pytest.approx(benched.cells["onnxruntime", "fp32"]["auc"], abs=1e-9)
    # An exported bundle names no published pair for TrackerNano to run.
    reference = report["reference"]
    assert reference["status"] == "build_failed" and "opencv-nano=BACKBONE.onnx,HEAD.onnx" in reference["reason"]


def test_model_without_torch_is_one_line(short, tmp_path):
    code = "import sys; sys.modules['torch'] = None; from edgetrack.cli import main; main()"
    run = subprocess.run(
        [sys.executable, "-c", code, "bench", "--model", "nanotrack-v2", "--dataset", str(short), "--out", str(tmp_path)],
        capture_output=True, text=True,
    )
    line = error_line(run)
    assert "torch" in line and "edgetrack[train,deploy]" in line


def test_bad_input_is_one_line_before_any_work(nanotrack_bundles, short, tmp_path):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    before = snapshot(path)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    cases = [
        (["--precisions", "fp32,fp64"], "'fp64'"),
        (["--backends", "onnxruntime,cuda"], "'cuda'"),
        (["--compare", "opencv"], "opencv-nano"),
        (["--compare", "opencv-nano=only-one.onnx"], "BACKBONE.onnx,HEAD.onnx"),
        (["--out", blocker / "out"], "cannot write results to"),
        (["--calib", tmp_path / "nowhere"], "does not exist"),
    ]
    for options, message in cases:
        line = error_line(edgetrack("bench", path, "--dataset", short, "--out", tmp_path / "out", *options))
        assert message in line, (options, line)
    assert "does not exist" in error_line(edgetrack("bench", path, "--dataset", tmp_path / "nowhere"))
    assert "either a BUNDLE or --model" in error_line(edgetrack("bench", "--dataset", short))
    assert "not an edgetrack bundle" in error_line(edgetrack("bench", tmp_path, "--dataset", short))
    assert snapshot(path) == before


def test_help_has_an_example():
    run = edgetrack("bench", "--help")
    assert run.returncode == 0 and "Example" in run.stdout and "--compare" in run.stdout
