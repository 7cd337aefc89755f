"""The students shipped in runtime/pretrained/: they load in the base install without torch, pass their sha256
checks, have a model card, stay within their parameter limits and track Crossing above a stated AUC."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgetrack.runtime.bundle import load_bundle
from edgetrack.runtime.pretrained import model_card, shipped

#: parameters the tracker holds (the bundle's cost) at most, and the least Crossing AUC each must reach
LIMITS = {"edgetrack-nano-m": (338_302, 0.65), "edgetrack-nano-s": (70_000, 0.50)}


def test_both_students_ship_with_a_card():
    assert set(shipped()) == set(LIMITS)
    for name in LIMITS:
        text = model_card(name).read_text()
        assert text.startswith(f"# {name}\n") and "benchmarks/train_pretrained.py" in text and "AUC per sequence" in text


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_a_shipped_student_is_a_sound_small_bundle(name):
    bundle = load_bundle(shipped()[name], verify=True)
    assert bundle.meta.cost.params <= LIMITS[name][0]
    assert bundle.meta.producer["teacher"] == "nanotrack-v2"
    assert sum(p.stat().st_size for p in bundle.path.iterdir()) < 2_000_000


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_the_base_install_tracks_crossing_by_name(name, data, tmp_path):
    python = os.environ.get("EDGETRACK_BASE_PYTHON", sys.executable)
    run = subprocess.run(
        [python, "-c", "import sys; sys.modules['torch'] = None; from edgetrack.cli import main; main()",
         "eval", name, "--dataset", str(data / "sequences" / "Crossing"), "--out", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    auc = json.loads((tmp_path / "summary.json").read_text())["sequences"]["Crossing"]["auc"]
    assert auc >= LIMITS[name][1], auc


def test_models_lists_the_shipped_students():
    pytest.importorskip("torch")
    run = subprocess.run([sys.executable, "-m", "edgetrack.cli", "models", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = {row["name"]: row for row in json.loads(run.stdout)}
    for name, (limit, _) in LIMITS.items():
        assert rows[name]["teacher"] == "nanotrack-v2" and rows[name]["params"] <= limit
        assert rows[name]["card"] == str(model_card(name))
