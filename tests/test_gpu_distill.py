"""benchmarks/gpu_distill.py, the prepared call for a lent GPU, tried here on the CPU (--allow-cpu): its budget
stops training with a checkpoint and a report, the same call resumes and finishes, and it trains on what was
carried only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_distill.py"


def carried_data(data: Path, folder: Path) -> Path:
    """A carried data folder: the teacher's weights and one of the recipe's videos, no train/ sequences."""
    weights = folder / "models" / "nanotrack" / "v2" / "nanotrackv2.pth"
    weights.parent.mkdir(parents=True)
    weights.symlink_to(data / "models" / "nanotrack" / "v2" / "nanotrackv2.pth")
    (folder / "videos").mkdir()
    (folder / "videos" / "fear_test.mp4").symlink_to(data / "videos" / "fear_test.mp4")
    return folder


def train(carried: Path, out: Path, work: Path, budget_s: float) -> dict:
    args = ["--out", str(out), "--work", str(work), "--allow-cpu", "--batch-size", "2", "--steps-scale", "0.01", "--workers", "0"]
    env = {**os.environ, "EDGETRACK_DATA": str(carried), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(SCRIPT), "train", *args, "--budget-s", str(budget_s)], env=env, check=True, capture_output=True, timeout=300)
    return json.loads((out / "gpu_distill.json").read_text())


def test_the_budget_stops_with_a_checkpoint_and_the_same_call_resumes_to_the_end(data, tmp_path):
    carried = carried_data(data, tmp_path / "data")
    out, work = tmp_path / "out", tmp_path / "work"
    # stage 1's ten steps take a second or more: the stop comes inside them, as soon as the trainer listens
    stopped = train(carried, out, work, budget_s=0.1)
    assert not stopped["finished"] and not (out / "edgetrack-nano-m-gpu.pt").exists()
    assert (out / "work" / "edgetrack-nano-m-gpu" / "stage1" / "last.pt").is_file()
    assert stopped["data"] == ["unlabeled:$EDGETRACK_DATA/videos/fear_test.mp4@0.5", "synthetic@1"]
    assert stopped["batch_size"] == 2 and stopped["steps"] == 10 + 10 + 30

    finished = train(carried, out, work, budget_s=600)
    assert finished["finished"] and (out / "edgetrack-nano-m-gpu.pt").is_file()
    assert [s["steps_logged"] for s in finished["stages"]] == [10, 10, 30]
    assert all(s["pairs_per_s"] > 0 for s in finished["stages"])


def test_without_cuda_it_refuses_in_one_line_before_training(data, tmp_path):
    carried = carried_data(data, tmp_path / "data")
    env = {**os.environ, "EDGETRACK_DATA": str(carried), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, str(SCRIPT), "train", "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and not (tmp_path / "out").exists()
    assert result.stderr.strip().splitlines() == ["gpu_distill: no CUDA device is visible to torch; run it on the lent GPU, or pass --allow-cpu to try it here"]
