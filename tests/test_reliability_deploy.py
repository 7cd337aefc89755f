"""The reliability cases of the deploy floor: --force that replaces only a bundle, builds that run at once on one
bundle, gates that NaN cannot pass, parity that refuses NaN outputs, a --version that contradicts the files, and
builds stopped by SIGTERM or by a full disk."""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from conftest import cut_sequence, nanotrack_pair

import edgetrack.deploy.build_engine as build
from edgetrack.deploy.bench import plan_bench
from edgetrack.deploy.bundle_writer import LOCK_FILE, bundle_lock
from edgetrack.deploy.import_nanotrack import detect_version, import_nanotrack
from edgetrack.runtime.bundle import load_bundle, sha256_file
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.errors import BundleError, InputError, OutputError

#: The first frames of bag: enough to calibrate and gate on, few enough to build twice at once in seconds.
SHORT_FRAMES = 30

#: Adds a precision (the fp32 files under new names) from a bundle loaded before a barrier that the two
#: processes pass together, with a second between reading the metadata and writing it back: without the lock,
#: both read the same metadata and the second write drops the first one's precision.
ADD_AT_ONCE = """
import sys, time
from pathlib import Path
from edgetrack.deploy import bundle_writer
from edgetrack.runtime.bundle import load_bundle
from edgetrack.runtime.records import AccuracyRecord

path, precision, barrier = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
write = bundle_writer.write_atomic
def slow_write(target, data):
    time.sleep(1)
    write(target, data)
bundle_writer.write_atomic = slow_write
bundle = load_bundle(path)
(barrier / precision).touch()
while len(list(barrier.iterdir())) < 2:
    time.sleep(0.01)
files = {f"{kind}.{precision}.onnx": (path / f"{kind}.onnx").read_bytes() for kind in ("template", "search")}
record = AccuracyRecord(auc=0.5, fp32_auc=0.5, drop=0.0, max_auc_drop=0.02, backend="onnxruntime")
bundle_writer.add_precision(bundle, precision, files, accuracy=record)
"""

#: A build as the command line runs it, exiting with the code a SIGTERM asks for.
BUILD = """
import sys
from edgetrack.deploy.build_engine import BuildInterrupted, build_engine
try:
    build_engine(sys.argv[1], "fp16", backend="onnxruntime", eval_sources=[sys.argv[2]])
except BuildInterrupted as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def edgetrack(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgetrack.cli", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_bundle(bundle, where: Path) -> Path:
    return Path(shutil.copytree(bundle.path, where / bundle.path.name))


def assert_whole(path: Path, precisions: set[str]) -> None:
    """The bundle loads, holds ``precisions``, every listed file matches its sha256, and nothing else lies there."""
    meta = load_bundle(path).meta
    assert set(meta.models) == precisions
    for name, digest in meta.files.items():
        assert sha256_file(path / name) == digest, name
    assert sorted(p.name for p in path.iterdir()) == sorted([*meta.files, "edgetrack.json"])


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def short(data, tmp_path_factory) -> Path:
    """bag cut to its first frames, as a VOT folder."""
    return cut_sequence(data / "sequences" / "bag", "color", "groundtruth.txt", SHORT_FRAMES, tmp_path_factory.mktemp("short") / "bag")


# ------------------------------------------------------------------------------------------ --force


@pytest.mark.parametrize("kind", ["folder", "file", "symlink"])
def test_force_replaces_only_a_bundle(kind, tmp_path):
    out = tmp_path / "thesis"
    if kind == "folder":
        out.mkdir()
        (out / "thesis.tex").write_text("\\chapter{Results}\n")
    elif kind == "file":
        out.write_text("\\chapter{Results}\n")
    else:
        (tmp_path / "elsewhere").mkdir()
        out.symlink_to(tmp_path / "elsewhere")
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(OutputError, match="not an edgetrack bundle: --force replaces only a bundle"):
        import_nanotrack(*nanotrack_pair("v2"), out, force=True)
    assert {p.name for p in tmp_path.iterdir()} == before
    if kind == "folder":
        assert (out / "thesis.tex").read_text() == "\\chapter{Results}\n"
    elif kind == "file":
        assert out.read_text() == "\\chapter{Results}\n"
    else:
        assert out.is_symlink()


def test_export_force_keeps_a_user_folder(tmp_path):
    pytest.importorskip("torch", reason="export needs torch")
    from edgetrack.deploy.export import export_model, load_model

    out = tmp_path / "results"
    out.mkdir()
    (out / "thesis.tex").write_text("\\chapter{Results}\n")
    with pytest.raises(OutputError, match="a folder without edgetrack.json"):
        export_model(load_model("nanotrack-v2-s50", None), out, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["results"] and [p.name for p in out.iterdir()] == ["thesis.tex"]


# ------------------------------------------------------------------------------------ builds at once on one bundle


def test_two_builds_at_once_keep_both_precisions(nanotrack_bundles, short, tmp_path):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    builds = [
        edgetrack("build-engine", path, "--precision", "fp16", "--backend", "onnxruntime", "--eval", short),
        edgetrack("build-engine", path, "--precision", "int8", "--backend", "onnxruntime", "--calib", short, "--calib-frames", 10),
    ]
    for run in builds:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
    assert_whole(path, {"fp32", "fp16", "int8"})
    meta = load_bundle(path).meta
    assert set(meta.accuracy) == {"fp16", "int8"} and meta.calibration["search_feeds"] == 10


def test_metadata_changes_wait_for_the_bundle_lock(nanotrack_bundles, tmp_path):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    adds = [
        subprocess.Popen([sys.executable, "-c", ADD_AT_ONCE, str(path), precision, str(barrier)], stderr=subprocess.PIPE, text=True)
        for precision in ("fp16", "int8")
    ]
    for run in adds:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
    assert_whole(path, {"fp32", "fp16", "int8"})
    assert set(load_bundle(path).meta.accuracy) == {"fp16", "int8"}


def test_a_lock_held_too_long_is_one_line(nanotrack_bundles, tmp_path):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    with bundle_lock(path):
        assert (path / LOCK_FILE).exists() and load_bundle(path).meta.models
        with pytest.raises(BundleError, match="let it finish and run this again"):
            with bundle_lock(path, wait_s=0.2):
                pass
    assert not (path / LOCK_FILE).exists()
    with bundle_lock(path):
        pass


# ------------------------------------------------------------------------------------ NaN and the accuracy gate


@pytest.mark.parametrize("drop", [math.nan, math.inf, -0.01])
def test_max_auc_drop_must_be_finite_and_not_negative(drop, nanotrack_bundles, short, tmp_path):
    with pytest.raises(InputError, match="--max-auc-drop must be a finite number >= 0"):
        build.build_engine(nanotrack_bundles["v2"].path, "fp16", backend="onnxruntime", eval_sources=[short], max_auc_drop=drop)
    with pytest.raises(InputError, match="--max-auc-drop must be a finite number >= 0"):
        plan_bench(short, tmp_path / "bench", max_auc_drop=drop)


def test_nan_max_auc_drop_on_the_command_line_is_one_line(nanotrack_bundles, short, tmp_path):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    before = snapshot(path)
    run = edgetrack("build-engine", path, "--precision", "fp16", "--backend", "onnxruntime", "--eval", short, "--max-auc-drop", "nan")
    _, stderr = run.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert run.returncode == 1 and lines == ["error: --max-auc-drop must be a finite number >= 0 (how much mean AUC a build may lose against fp32), got nan"]
    assert snapshot(path) == before


def test_a_nan_auc_fails_the_gate(nanotrack_bundles, short, monkeypatch):
    reference, candidate = nanotrack_bundles["v2"], nanotrack_bundles["v1"]
    sequences = [(short, s) for s in load_dataset(short).sequences]

    def track(bundle, precision, backend, sequences, bar):
        auc = 0.7 if bundle is reference else math.nan
        return [SimpleNamespace(scores=SimpleNamespace(auc=auc)) for _ in sequences]

    monkeypatch.setattr(build, "_track", track)
    with pytest.raises(build.AccuracyGateError) as refused:
        build.accuracy_gate(reference, candidate, "fp32", "onnxruntime", sequences, max_auc_drop=1.0)
    assert math.isnan(refused.value.record.drop)
    assert not build.gate_passes(dataclasses.replace(refused.value.record, max_auc_drop=math.inf))


class RecordingProgress:
    """A ``runtime.progress.Progress`` that keeps every call, as (total, label) tasks and the steps of each."""

    def __init__(self):
        self.tasks: list[tuple[int, str]] = []
        self.steps: list[int] = []
        self.open = False

    def start(self, total: int, label: str) -> None:
        self.tasks.append((total, label))
        self.steps.append(0)
        self.open = True

    def advance(self, n: int = 1) -> None:
        self.steps[-1] += n

    def close(self) -> None:
        self.open = False


def test_build_engine_reports_through_its_callbacks_and_prints_nothing(nanotrack_bundles, short, tmp_path, capsys):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    notes: list[str] = []
    progress = RecordingProgress()
    build.build_engine(
        path,
        "int8",
        backend="onnxruntime",
        calib=[short],
        calib_frames=5,
        timing_cache=tmp_path / "timing.cache",
        max_auc_drop=1.0,
        note=notes.append,
        progress=progress,
    )
    assert notes == ["note: --timing-cache applies to TensorRT builds only; ignored", "converting the fp32 models to int8"]
    gate_frames = 2 * (SHORT_FRAMES - 1)
    assert [label for _, label in progress.tasks] == ["calibration crops", "accuracy gate fp32 vs int8"]
    assert progress.tasks[1][0] == gate_frames and progress.steps[1] == gate_frames
    assert progress.steps[0] == progress.tasks[0][0] > 0 and not progress.open
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------------------------------ NaN and parity


def test_export_refuses_nan_outputs(tmp_path):
    torch = pytest.importorskip("torch", reason="export needs torch")
    from edgetrack.deploy.export import export_model, load_model

    model = load_model("nanotrack-v1", None)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = math.nan
    with pytest.raises(BundleError, match="torch gives NaN or inf in output 'zf'.*nothing was written"):
        export_model(model, tmp_path / "nan.etb")
    assert list(tmp_path.iterdir()) == []


def test_import_refuses_nan_weights(tmp_path):
    backbone_path, head_path = nanotrack_pair("v2")
    backbone = onnx.load(str(backbone_path))
    weight = backbone.graph.initializer[0]
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] = np.nan
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    poisoned = tmp_path / "backbone.onnx"
    onnx.save(backbone, str(poisoned))
    with pytest.raises(BundleError, match="the original pair gives NaN or inf in output 'cls'.*nothing was written"):
        import_nanotrack(poisoned, head_path, tmp_path / "nan.etb")
    assert [p.name for p in tmp_path.iterdir()] == ["backbone.onnx"]


# ------------------------------------------------------------------------------------ --version against the files


@pytest.mark.parametrize("files, given", [("v2", "v1"), ("v1", "v2"), ("v3", "v2")])
def test_a_version_the_files_contradict_is_refused(files, given, tmp_path):
    with pytest.raises(BundleError) as refused:
        import_nanotrack(*nanotrack_pair(files), tmp_path / "x.etb", version=given)
    message = str(refused.value)
    assert message.startswith(f"--version {given} but these files are NanoTrack {files} (")
    assert message.endswith(f"drop --version or give the {given} files") and "\n" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version, other_opset", [("v1", 14), ("v2", 9), ("v3", 9)])
def test_the_version_comes_from_the_head_not_the_opset(version, other_opset):
    """The published v1 and v2 differ in opset (9 and 14), but a re-export changes that; their heads differ."""
    backbone, head = (onnx.load(str(p)) for p in nanotrack_pair(version))
    assert detect_version(backbone, head) == version
    for model in (backbone, head):
        del model.opset_import[:]
        model.opset_import.append(onnx.helper.make_opsetid("", other_opset))
    assert detect_version(backbone, head) == version


# ------------------------------------------------------------------------------------ SIGTERM and full disks


def test_sigterm_removes_the_staging_folder_and_leaves_the_bundle(nanotrack_bundles, short, tmp_path):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    before = snapshot(path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = subprocess.Popen(
        [sys.executable, "-c", BUILD, str(path), str(short)], stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)}
    )
    deadline = time.monotonic() + 60
    while not list(scratch.glob("edgetrack-build-*")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == f"error: build-engine stopped by SIGTERM; {path} is unchanged"
    assert not list(scratch.glob("edgetrack-*"))
    assert snapshot(path) == before


def test_a_full_temporary_disk_is_one_line(nanotrack_bundles, short, tmp_path, monkeypatch):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    before = snapshot(path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(shutil, "copyfile", disk_full)
    with pytest.raises(OutputError) as refused:
        build.build_engine(path, "fp16", backend="onnxruntime", eval_sources=[short])
    assert str(refused.value).startswith(f"cannot write temporary files in {scratch}: ")
    assert "No space left on device" in str(refused.value) and "TMPDIR" in str(refused.value)
    assert list(scratch.iterdir()) == [] and snapshot(path) == before


def test_a_missing_temporary_folder_is_one_line(nanotrack_bundles, short, tmp_path, monkeypatch):
    path = copy_bundle(nanotrack_bundles["v2"], tmp_path)
    missing = tmp_path / "missing"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    with pytest.raises(OutputError, match=f"cannot write temporary files in {missing}: No such file or directory; set TMPDIR"):
        build.build_engine(path, "fp16", backend="onnxruntime", eval_sources=[short])


def test_a_full_disk_under_import_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OutputError, match=f"cannot write the bundle in {tmp_path}: No space left on device"):
        import_nanotrack(*nanotrack_pair("v2"), tmp_path / "v2.etb")
    assert list(tmp_path.iterdir()) == []
