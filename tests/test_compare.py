"""runtime.compare: per-output errors computed by hand, NaN named where it appears, the records bundles keep (old
ones included), the accuracy gate naming the output that drifted, and `edgetrack compare` on a shipped student."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import edgetrack.deploy.build_engine as build
from edgetrack.deploy.bundle_writer import add_precision
from edgetrack.runtime.bundle import METADATA_FILE, load_bundle
from edgetrack.runtime.compare import Comparison, compare_outputs, output_diff
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.errors import InputError
from edgetrack.runtime.pretrained import resolve, shipped
from edgetrack.runtime.records import AccuracyRecord, ParityRecord, SequenceAccuracy, Tolerance

REFERENCE = np.array([1.0, -2.0, 4.0, 0.0], np.float32)
CANDIDATE = np.array([1.5, -2.0, 3.0, 0.0], np.float32)


def test_output_errors_on_known_arrays():
    """|diff| = 0.5, 0, 1, 0; the reference's scale is 4; the bound 0.1 + 0.1|ref| is 0.2, 0.3, 0.5, 0.1."""
    diff = output_diff("loc", REFERENCE, CANDIDATE, Tolerance(atol=0.1, rtol=0.1))
    assert (diff.max_abs, diff.scale, diff.max_rel, diff.mean_abs) == (1.0, 4.0, 0.25, 0.375)
    # sorted 0, 0, 0.5, 1: the median halves 0 and 0.5; p95 and p99 interpolate between 0.5 and 1 at 0.85 and 0.97
    assert (diff.p50_abs, diff.p95_abs, diff.p99_abs) == pytest.approx((0.25, 0.925, 0.985))
    assert diff.elements == 4 and diff.beyond == 2 and not diff.passed
    assert output_diff("loc", REFERENCE, CANDIDATE, Tolerance(atol=1.0, rtol=0.0)).passed


def test_a_comparison_takes_its_worst_output_and_names_nan():
    reference = {"zf": np.ones((1, 3)), "cls": REFERENCE[None], "loc": REFERENCE[None]}
    candidate = {"zf": np.ones((1, 3)), "cls": REFERENCE[None] + 0.25, "loc": np.array([[1.0, -2.0, np.nan, 0.0]]), "extra": np.zeros(1)}
    outputs = compare_outputs(reference, candidate, Tolerance(atol=1e-3, rtol=0.0))
    comparison = Comparison("ort", "int8", "random", Tolerance(atol=1e-3, rtol=0.0), outputs)
    assert [o.name for o in outputs] == ["zf", "cls", "loc"]  # the reference's order; "extra" is on one side only
    assert comparison.worst.name == "loc" and math.isnan(comparison.max_abs)
    assert comparison.nonfinite() == ("int8", "loc") and not comparison.passed
    assert (outputs[1].max_abs, outputs[1].max_rel, outputs[1].beyond) == (0.25, 0.0625, 4)
    with pytest.raises(InputError, match="output 'cls' is"):
        compare_outputs(reference, {**candidate, "cls": np.zeros((1, 5))}, Tolerance(0.0, 0.0))


def test_records_round_trip_and_old_records_still_load():
    diff = output_diff("cls", REFERENCE, CANDIDATE)
    parity = ParityRecord("torch (fp32, CPU)", 1.0, "onnxruntime", "Crossing", 0.25, Tolerance(1e-3, 1e-3), False, (diff,))
    accuracy = AccuracyRecord(0.7, 0.72, 0.02, 0.02, "onnxruntime", ("a",), (SequenceAccuracy("Crossing", 0.72, 0.7),), parity)
    assert ParityRecord.from_json(json.loads(json.dumps(parity.to_json()))) == parity
    assert AccuracyRecord.from_json(json.loads(json.dumps(accuracy.to_json()))) == accuracy
    imported = {"reference": "original backbone + head (onnxruntime)", "max_abs_diff": 0.0}  # import-nanotrack's old record
    assert ParityRecord.from_json(imported).to_json() == imported
    old_gate = {k: v for k, v in accuracy.to_json().items() if k != "parity"}
    assert AccuracyRecord.from_json(old_gate).parity is None and AccuracyRecord.from_json(old_gate).to_json() == old_gate


@pytest.mark.parametrize("name", sorted(shipped()))
def test_shipped_bundles_load_and_keep_their_parity_json(name):
    path = resolve(name)
    raw = json.loads((path / METADATA_FILE).read_text())
    meta = load_bundle(path).meta
    assert meta.parity.max_abs_diff == raw["parity"]["max_abs_diff"] and meta.parity.passed
    again = json.loads(meta.to_json())
    assert again["parity"] == raw["parity"] and again["accuracy"] == raw.get("accuracy")


def scaled_output(model_path, name: str, factor: float) -> bytes:
    """The search model with output ``name`` multiplied by ``factor``: a build that drifted on that output only."""
    model = onnx.load(str(model_path))
    for node in model.graph.node:
        node.output[:] = [f"{name}_raw" if o == name else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "drift"))
    model.graph.node.append(helper.make_node("Mul", [f"{name}_raw", "drift"], [name]))
    return model.SerializeToString()


def test_a_refused_build_names_the_output_that_drifted(nanotrack_bundles, bundle_copy, data, monkeypatch):
    reference = nanotrack_bundles["v2"]
    files = {"template.fp16.onnx": (bundle_copy / "template.onnx").read_bytes(), "search.fp16.onnx": scaled_output(bundle_copy / "search.onnx", "loc", 1.1)}
    candidate = add_precision(load_bundle(bundle_copy), "fp16", files)
    crossing = data / "sequences" / "Crossing"
    sequences = [(crossing, s) for s in load_dataset(crossing).sequences]

    def track(bundle, precision, backend, sequences, bar):
        return [SimpleNamespace(scores=SimpleNamespace(auc=0.7 if bundle is reference else 0.6)) for _ in sequences]

    monkeypatch.setattr(build, "_track", track)
    with pytest.raises(build.AccuracyGateError, match="its output furthest from fp32 is 'loc'") as refused:
        build.accuracy_gate(reference, candidate, "fp16", "onnxruntime", sequences, max_auc_drop=0.02)
    errors = {o.name: o for o in refused.value.record.parity.outputs}
    assert list(errors) == ["zf", "cls", "loc"]
    assert errors["zf"].max_abs == errors["cls"].max_abs == 0.0
    assert errors["loc"].max_rel == pytest.approx(0.1, rel=1e-5)
    assert refused.value.record.parity.inputs == f"Crossing of {crossing}"

    kept = build.accuracy_gate(reference, candidate, "fp16", "onnxruntime", sequences, max_auc_drop=0.5)
    written = add_precision(candidate, "fp16", files, accuracy=kept)
    assert load_bundle(written.path).meta.accuracy["fp16"] == kept


def test_compare_verb_prints_small_errors_for_a_shipped_student(data):
    run = subprocess.run(
        [sys.executable, "-m", "edgetrack.cli", "compare", "edgetrack-nano-s", "--backend", "onnxruntime", "--backend", "opencv",
         "--dataset", str(data / "sequences" / "Crossing"), "--frames", "4"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    header, columns, *rows = run.stdout.splitlines()
    assert header.startswith("edgetrack-nano-s: reference fp32 onnxruntime") and "4 search crops of Crossing" in header
    assert columns.split() == ["candidate", "output", "max", "abs", "max", "rel", "p99", "abs"]
    assert [row.split()[-4] for row in rows] == ["zf", "cls", "loc"] and rows[0].startswith("fp32 opencv")
    for row in rows:
        max_abs, max_rel, p99 = (float(v) for v in row.split()[-3:])
        assert max_rel < 1e-4 and p99 <= max_abs < 1e-2, row


def test_compare_verb_errors_are_one_line(tmp_path, data):
    def error(*args):
        run = subprocess.run([sys.executable, "-m", "edgetrack.cli", "compare", *map(str, args)], capture_output=True, text=True)
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), run.stderr
        return lines[0]

    crossing = data / "sequences" / "Crossing"
    assert "nothing to compare" in error("edgetrack-nano-s", "--dataset", crossing)
    assert "has no int8 models" in error("edgetrack-nano-s", "--precision", "fp32", "--precision", "int8", "--dataset", crossing)
    assert "neither a bundle folder nor a shipped student" in error(tmp_path / "none.etb", "--backend", "opencv", "--backend", "onnxruntime", "--dataset", crossing)
