"""The bundle reader trusts nothing: every broken bundle fails with one clear line, from the API and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.bundle import load_bundle, sha256_file
from edgetrack.runtime.errors import BundleError


def edit_metadata(path, change):
    meta = json.loads((path / "edgetrack.json").read_text())
    change(meta)
    (path / "edgetrack.json").write_text(json.dumps(meta))


def open_models(path):
    OnnxRuntimeBackend(load_bundle(path))


def corrupt_byte(path):
    data = bytearray((path / "search.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "search.onnx").write_bytes(bytes(data))


def truncate_and_rehash(path):
    """A truncated file whose sha256 was updated too: only loading the model can tell."""
    file = path / "search.onnx"
    file.write_bytes(file.read_bytes()[:20000])
    edit_metadata(path, lambda m: m["files"].update({"search.onnx": sha256_file(file)}))


def wrong_shape_in_metadata(path):
    def change(meta):
        meta["search_io"]["outputs"]["cls"] = [1, 2, 17, 17]

    edit_metadata(path, change)



BROKEN = {
    "wrong sha256": (corrupt_byte, "does not match its sha256"),
    "missing file": (lambda p: (p / "template.onnx").unlink(), "template.onnx is missing"),
    "truncated onnx": (truncate_and_rehash, "ONNX Runtime cannot load"),
    "unknown schema": (lambda p: edit_metadata(p, lambda m: m.update(schema=99)), "unsupported bundle schema 99"),
    "unknown family": (lambda p: edit_metadata(p, lambda m: m.update(family="yolo")), "unknown model family 'yolo'"),
    "missing field": (lambda p: edit_metadata(p, lambda m: m.pop("hyper")), "malformed bundle metadata"),
    "malformed cost": (lambda p: edit_metadata(p, lambda m: m.update(cost={"params": "many"})), "malformed bundle metadata"),
    "not json": (lambda p: (p / "edgetrack.json").write_text("{nope"), "cannot parse"),
    "no metadata": (lambda p: (p / "edgetrack.json").unlink(), "not an edgetrack bundle"),
    "shapes disagree": (wrong_shape_in_metadata, r"output 'cls' has shape \(1, 2, 16, 16\), the metadata says \(1, 2, 17, 17\)"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_bundle_fails_with_one_line(bundle_copy, case):
    damage, message = BROKEN[case]
    damage(bundle_copy)
    with pytest.raises(BundleError, match=message) as error:
        open_models(bundle_copy)
    assert "\n" not in str(error.value)


def test_model_shapes_are_checked_against_the_metadata(bundle_copy, nanotrack_bundles):
    """A model file whose tensors disagree with the metadata is caught when it loads, even with a valid sha256."""
    v3_search = nanotrack_bundles["v3"].path / "search.onnx"
    shutil.copy(v3_search, bundle_copy / "search.onnx")
    edit_metadata(bundle_copy, lambda m: m["files"].update({"search.onnx": sha256_file(v3_search)}))
    with pytest.raises(BundleError, match=r"search.onnx input 'zf' has shape \(1, 96, 8, 8\), the metadata says \(1, 48, 8, 8\)"):
        open_models(bundle_copy)


def test_missing_precision_says_how_to_build_it(nanotrack_bundles):
    with pytest.raises(BundleError, match="has no int8 models.*build-engine"):
        nanotrack_bundles["v2"].model_paths("int8")


def test_not_a_directory(tmp_path):
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nothing.etb")


@pytest.mark.parametrize("case", ["wrong sha256", "truncated onnx", "missing file"])
def test_cli_reports_one_line_and_fails(bundle_copy, data, case):
    BROKEN[case][0](bundle_copy)
    run = subprocess.run(
        [sys.executable, "-m", "edgetrack.cli", "eval", str(bundle_copy), "--dataset", str(data / "sequences" / "dat"), "--out", str(bundle_copy.parent / "out")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert not (bundle_copy.parent / "out").exists()
