"""Reliability of the bundle reader: a bundle reads only its own files, and its metadata is checked for type and
range once, so that NaN, zero or absurd values are refused at load in one line."""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest

from edgetrack.runtime import bundle as bundle_module
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.bundle import load_bundle, sha256_file
from edgetrack.runtime.errors import BundleError
from edgetrack.runtime.onnx_refs import external_locations
from test_bundle import edit_metadata


def refused(path, match):
    with pytest.raises(BundleError, match=match) as error:
        load_bundle(path)
    assert "\n" not in str(error.value)
    return str(error.value)


# ----------------------------------------------------------------------------------------- file names


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.onnx", "sub/../../outside.onnx", "C:/Windows/win.ini", ""])
def test_file_names_outside_the_bundle_are_refused(bundle_copy, name):
    edit_metadata(bundle_copy, lambda m: m["files"].update({name: "0" * 64}))
    refused(bundle_copy, "outside the bundle|not a relative path")


def test_a_host_file_is_never_opened_nor_hashed(bundle_copy, tmp_path, monkeypatch):
    """Whether the outside file exists or not, the answer is the same line: it leaks nothing about the host."""
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's file")
    hashed = []
    monkeypatch.setattr(bundle_module, "sha256_file", lambda path: hashed.append(path) or sha256_file(path))
    messages = []
    digest = hashlib.sha256(b"the host's file").hexdigest()
    for target in (secret, tmp_path / "does-not-exist.txt"):
        case = tmp_path / f"case-{target.stem}.etb"
        shutil.copytree(bundle_copy, case)
        edit_metadata(case, lambda m, name=str(target): m["files"].update({name: digest}))
        messages.append(refused(case, "outside the bundle").replace(str(target), "X").replace(str(case), "B"))
    assert messages[0] == messages[1]
    assert secret not in hashed and all(p.is_relative_to(tmp_path) and "secret" not in p.name for p in hashed)


def test_model_file_names_are_checked_too(bundle_copy):
    edit_metadata(bundle_copy, lambda m: m["models"]["fp32"].update(template="../template.onnx"))
    refused(bundle_copy, "outside the bundle")


def test_a_symlink_out_of_the_bundle_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(bundle_copy / "template.onnx", outside)
    (bundle_copy / "template.onnx").unlink()
    os.symlink(outside, bundle_copy / "template.onnx")
    refused(bundle_copy, "resolves outside the bundle")


# ----------------------------------------------------------------------------------------- external data


def _with_external_data(bundle, location: str, list_it: bool) -> None:
    """Move the template model's weights to ``location`` as ONNX external data, and re-hash the bundle."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(bundle / "template.onnx"))
    data = bundle / "weights.bin"
    onnx.save_model(model, str(bundle / "template.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=1024)
    if location != "weights.bin":
        moved = (bundle / location).resolve()
        moved.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(data, moved)
        model = onnx.load(str(bundle / "template.onnx"), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save_model(model, str(bundle / "template.onnx"))

    def change(meta):
        meta["files"]["template.onnx"] = sha256_file(bundle / "template.onnx")
        if list_it:
            meta["files"][location] = sha256_file(bundle / location)

    edit_metadata(bundle, change)


def test_external_data_outside_the_bundle_is_refused(bundle_copy):
    """OpenCV's DNN module would read ``../weights.bin``; the bundle reader refuses it before any backend sees it."""
    _with_external_data(bundle_copy, "../weights.bin", list_it=False)
    assert set(external_locations((bundle_copy / "template.onnx").read_bytes())) == {"../weights.bin"}
    refused(bundle_copy, r"template.onnx reads tensor data from '../weights.bin', which is not a file of the bundle")


def test_external_data_the_bundle_does_not_list_is_refused(bundle_copy):
    _with_external_data(bundle_copy, "weights.bin", list_it=False)
    refused(bundle_copy, "'weights.bin', which is not a file of the bundle")


def test_external_data_listed_in_the_bundle_loads_and_runs(bundle_copy, nanotrack_bundles):
    _with_external_data(bundle_copy, "weights.bin", list_it=True)
    runners = OnnxRuntimeBackend(load_bundle(bundle_copy)), OnnxRuntimeBackend(nanotrack_bundles["v2"])
    rng = np.random.default_rng(0)
    z, x = rng.uniform(0, 255, runners[0].template_input.shape), rng.uniform(0, 255, runners[0].search_input.shape)
    outputs = []
    for runner in runners:
        runner.template_input[...] = z
        runner.search_input[...] = x
        runner.run_template()
        outputs.append({name: value.copy() for name, value in runner.run_search().items()})
        runner.close()
    assert outputs[0].keys() == outputs[1].keys()
    for name in outputs[0]:
        np.testing.assert_array_equal(outputs[0][name], outputs[1][name])


def test_real_models_have_no_external_data(nanotrack_bundles):
    for bundle in nanotrack_bundles.values():
        for name in bundle.meta.files:
            assert external_locations((bundle.path / name).read_bytes()) == []


# ----------------------------------------------------------------------------------------- metadata values


def _set(section, key, value):
    return lambda m: m[section].update({key: value})


BAD_VALUES = {
    "NaN penalty": (_set("hyper", "penalty_k", float("nan")), "hyper.penalty_k must be a finite number"),
    "inf lr": (_set("hyper", "lr", float("inf")), "hyper.lr must be a finite number"),
    "window above 1": (_set("hyper", "window_influence", 1.5), r"hyper.window_influence must be a finite number in \[0, 1\]"),
    "NaN lost threshold": (_set("hyper", "lost_threshold", float("nan")), "hyper.lost_threshold"),
    "string threshold": (_set("hyper", "lost_threshold", "0.8"), "hyper.lost_threshold must be a finite number"),
    "std 0": (_set("input", "std", [1.0, 0.0, 1.0]), r"input.std\[1\] must be a finite number in \(0, inf\]"),
    "NaN mean": (_set("input", "mean", [0.0, float("nan"), 0.0]), r"input.mean\[1\]"),
    "two means": (_set("input", "mean", [0.0, 0.0]), "input.mean must be a list of 3 numbers"),
    "scale 0": (_set("input", "scale", 0), "input.scale"),
    "stride 0": (_set("geometry", "stride", 0), "geometry.stride must be an integer in 1..256, got 0"),
    "string size": (_set("geometry", "exemplar_size", "127"), "geometry.exemplar_size must be an integer in 1..4096, got '127'"),
    "float size": (_set("geometry", "instance_size", 255.0), "geometry.instance_size must be an integer"),
    "bool size": (_set("geometry", "score_size", True), "geometry.score_size must be an integer"),
    "score size 0": (_set("geometry", "score_size", 0), "geometry.score_size must be an integer in 1..1024, got 0"),
    "score size 1e6": (_set("geometry", "score_size", 1_000_000), "geometry.score_size must be an integer in 1..1024"),
    "NaN context": (_set("geometry", "context_amount", float("nan")), "geometry.context_amount"),
    "unknown geometry": (_set("geometry", "warp", 2), "unknown geometry field"),
    "huge output": (lambda m: m["search_io"]["outputs"].update(cls=[1, 2, 65536, 65536]), "search_io.outputs.cls must be a tensor of at most"),
    "negative dim": (lambda m: m["search_io"]["outputs"].update(cls=[1, 2, -16, 16]), "search_io.outputs.cls must be an integer"),
    "bad digest": (lambda m: m["files"].update({"search.onnx": "abc"}), "files.search.onnx must be a sha256"),
    "models not an object": (lambda m: m.update(models=["fp32"]), "models must be an object"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_nonsense_metadata_is_refused_at_load(bundle_copy, case):
    change, message = BAD_VALUES[case]
    edit_metadata(bundle_copy, change)
    refused(bundle_copy, message)


def test_the_cli_refuses_a_nan_bundle_in_one_line(bundle_copy, data, tmp_path):
    from test_cli import edgetrack, one_error_line

    edit_metadata(bundle_copy, _set("hyper", "penalty_k", float("nan")))
    line = one_error_line(edgetrack("eval", bundle_copy, "--dataset", data / "sequences" / "dat", "--out", tmp_path / "out"))
    assert "hyper.penalty_k must be a finite number" in line and "got nan" in line
    assert not (tmp_path / "out").exists()
