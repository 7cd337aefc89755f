"""End to end through the command line: distil two students from the real NanoTrack v3, stop the run with SIGTERM,
resume it, and check it ends exactly where an uninterrupted run ends; then load and export what it wrote; the
same under torchrun with two gloo processes; and the data problems a long run must survive."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
pytest.importorskip("yaml", reason="training needs the train extra (pyyaml)")

from conftest import DATA  # noqa: E402

TEACHER = f"nanotrack-v3:{DATA / 'models/nanotrack/v3/nanotrackv3.pth'}"
STUDENTS = "nanotrack-v3-s50,nanotrack-v3-s50"
#: 2 epochs of 12 steps of 2 pairs: long enough to be stopped in the middle, short enough for CI.
SMALL_RUN = ["--epochs", "2", "--steps", "12", "--batch-size", "2", "--workers", "0", "--quiet"]


#: One thread per process: pytest may run beside other work, and oversubscribed OpenMP threads spin instead of
#: yielding, which can make a step a hundred times slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgetrack.cli", *args]


def quiet_config(tmp_path: Path, validation: int = 1, checkpoint_every: int = 0) -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"log_every: 1\ncheckpoint_every: {checkpoint_every}\nvalidation:\n  synthetic: {validation}\n  every: {1 if validation else 0}\n"
    )
    return config


def distill_args(out: Path, config: Path) -> list[str]:
    return cli("distill", "--teacher", TEACHER, "--students", STUDENTS, "--data", "synthetic:6", "--config", str(config), "--out", str(out), *SMALL_RUN)


def log_rows(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def steps_logged(out: Path) -> int:
    path = out / "log.csv"
    if not path.exists():
        return 0
    rows = log_rows(out)
    return int(rows[-1]["step"]) if rows else 0


def run_ok(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, **kwargs)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("straight")
    out = root / "run"
    run_ok(distill_args(out, quiet_config(root)))
    return out


def test_sigterm_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path, uninterrupted):
    out = tmp_path / "run"
    # A background job inherits SIGINT/SIGTERM ignored; give the trainer a terminal's default handlers.
    process = subprocess.Popen(
        distill_args(out, quiet_config(tmp_path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        preexec_fn=lambda: (signal.signal(signal.SIGTERM, signal.SIG_DFL), signal.signal(signal.SIGINT, signal.SIG_DFL)),
    )
    deadline = time.monotonic() + 120
    while steps_logged(out) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "--resume" in stderr.strip().splitlines()[-1]

    saved = torch.load(out / "last.pt", weights_only=True)
    stopped_at = saved["step"]
    assert 3 <= stopped_at < 24
    assert saved["saved_because"] == "signal"

    run_ok(distill_args(out, quiet_config(tmp_path)) + ["--resume"])

    # The step count continues: every step logged once, none repeated, none missing.
    rows = log_rows(out)
    steps = [int(r["step"]) for r in rows if r["student"] == "nanotrack-v3-s50"]
    assert steps == list(range(1, 25))
    # And so do the losses: the resumed steps are those of the run that never stopped.
    straight = {(r["step"], r["student"]): r for r in log_rows(uninterrupted)}
    for row in rows:
        if int(row["step"]) > stopped_at:
            assert row["total"] == straight[(row["step"], row["student"])]["total"]
    assert_same_end(out, uninterrupted)


def test_sigkill_mid_epoch_then_resume_trains_again_from_the_last_step_checkpoint(tmp_path, uninterrupted):
    """A run killed without warning (a lost session) continues from its last ``checkpoint_every`` checkpoint,
    inside the epoch; the steps it logged after that checkpoint are logged once, as the resumed run trains them."""
    out = tmp_path / "run"
    process = subprocess.Popen(distill_args(out, quiet_config(tmp_path, checkpoint_every=3)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while steps_logged(out) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.kill()
    process.communicate(timeout=120)
    saved = torch.load(out / "last.pt", weights_only=True)
    killed_at, stopped_at = steps_logged(out), saved["step"]
    assert stopped_at % 3 == 0 and 3 <= stopped_at <= killed_at < 24
    assert saved["saved_because"] == ("epoch" if stopped_at == 12 else "steps")

    run_ok(distill_args(out, quiet_config(tmp_path, checkpoint_every=3)) + ["--resume"])

    steps = [int(r["step"]) for r in log_rows(out) if r["student"] == "nanotrack-v3-s50"]
    assert steps == list(range(1, 25))
    assert_same_end(out, uninterrupted)


def assert_same_end(out: Path, uninterrupted: Path) -> None:
    final = torch.load(out / "last.pt", weights_only=True)
    reference = torch.load(uninterrupted / "last.pt", weights_only=True)
    assert final["step"] == reference["step"] == 24
    for mine, theirs in zip(final["students"], reference["students"]):
        for key, tensor in mine["state_dict"].items():
            assert torch.equal(tensor, theirs["state_dict"][key]), key


def test_run_writes_validation_and_checkpoints_that_load_safely_and_export(tmp_path, uninterrupted):
    import json

    history = json.loads((uninterrupted / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for record in history:
        for name in ("nanotrack-v3-s50", "nanotrack-v3-s50-2"):
            assert 0.0 <= record[name]["auc"] <= 1.0
    checkpoint = torch.load(uninterrupted / "last.pt", weights_only=True)
    assert [s["record"]["name"] for s in checkpoint["students"]] == ["nanotrack-v3-s50", "nanotrack-v3-s50-2"]
    assert (uninterrupted / "tensorboard").is_dir()

    # Straight from the training checkpoint (naming one of its students) and from a student's weights file.
    bundle = tmp_path / "student.etb"
    run_ok(cli("export", "--weights", str(uninterrupted / "last.pt"), "--model", "nanotrack-v3-s50-2", "-o", str(bundle)))
    meta = json.loads((bundle / "edgetrack.json").read_text())
    assert meta["name"] == "nanotrack-v3-s50-2" and meta["parity"]["passed"]
    run_ok(cli("export", "--weights", str(uninterrupted / "nanotrack-v3-s50.pt"), "-o", str(tmp_path / "first.etb")))
    result = run_ok(cli("eval", str(tmp_path / "first.etb"), "--dataset", str(DATA / "sequences" / "Crossing"), "--out", str(tmp_path / "eval")))
    assert "Crossing" in result.stdout


def torchrun_distill(tmp_path: Path, attempt: int) -> tuple[Path, subprocess.CompletedProcess, str]:
    """Two gloo processes distilling 3 steps into their own folder; the run, and each worker's own stderr (torchrun
    writes them to per-rank files under ``--log-dir``, so a worker's last words are not lost behind the agent's
    traceback)."""
    root = tmp_path / f"attempt{attempt}"
    root.mkdir()
    out, logs = root / "ddp", root / "logs"
    args = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--log-dir", str(logs), "--redirects", "2",
        "-m", "edgetrack.cli", "distill", "--teacher", TEACHER, "--students", "nanotrack-v3-s50", "--data", "synthetic:6",
        "--config", str(quiet_config(root, validation=0)), "--out", str(out), "--device", "cpu",
        "--epochs", "1", "--steps", "3", "--batch-size", "2", "--workers", "0", "--quiet",
    ]
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300)
    workers = "\n".join(f"--- {path.relative_to(logs)}:\n{path.read_text()[-1500:]}" for path in sorted(logs.rglob("stderr.log")))
    return out, result, workers


def test_two_processes_with_gloo(tmp_path):
    out, result, workers = torchrun_distill(tmp_path, 1)
    if result.returncode != 0 and "Signal 6 (SIGABRT)" in result.stderr:
        # Once in CI a worker was aborted (SIGABRT) with no Python error, and never since in
        # dozens of runs under load: that one failure mode is retried once, every other failure fails at once.
        warnings.warn(f"a gloo worker aborted; retried once. Its output:\n{workers}", stacklevel=1)
        out, result, workers = torchrun_distill(tmp_path, 2)
    assert result.returncode == 0, f"{result.stderr[-1500:]}\nthe workers' stderr:\n{workers}"
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["step"] == 3
    # Rank 0 alone writes the log; each step counts both ranks' pairs.
    rows = log_rows(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    # The trainer compares the replicas' weights at the end and fails if DDP let them drift apart; it passed.
    from edgetrack.distill.checkpoint import load_model

    teacher_shrunk = load_model("nanotrack-v3-s50", out / "nanotrack-v3-s50.pt")
    assert sum(p.numel() for p in teacher_shrunk.parameters()) == 183_737


def got10k_fixture(root: Path) -> Path:
    """Two good GOT-10k sequences, one with a corrupt annotation line, and one with no frames."""
    import cv2
    import numpy as np

    split = root / "train"
    for name, lines, frames in (
        ("GOT-10k_Train_000001", ["10,10,30,20"] * 4, 4),
        ("GOT-10k_Train_000002", ["12,8,24,24"] * 4, 4),
        ("GOT-10k_Train_000003", ["10,10,30,20", "ten,10,30,20", "10,10,30,20"], 3),
        ("GOT-10k_Train_000004", ["10,10,30,20"], 0),
    ):
        folder = split / name
        folder.mkdir(parents=True)
        (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")
        for i in range(frames):
            cv2.imwrite(str(folder / f"{i + 1:08d}.jpg"), np.full((64, 80, 3), 40 * i, np.uint8))
    return root


def test_bad_sequences_are_skipped_and_counted(tmp_path):
    root = got10k_fixture(tmp_path / "got10k")
    out = tmp_path / "run"
    result = run_ok(
        cli("train", "--model", "nanotrack-v3-s50", "--data", f"got10k:{root}", "--config", str(quiet_config(tmp_path, validation=0)),
            "--out", str(out), "--epochs", "1", "--steps", "2", "--batch-size", "2", "--workers", "0", "--quiet")
    )
    assert "2 sequences, skipped 2" in result.stdout
    skipped = (out / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 2
    assert any("GOT-10k_Train_000003" in line and "line 2" in line for line in skipped)
    assert any("GOT-10k_Train_000004" in line for line in skipped)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "got10k:/nonexistent/GOT-10k"], "/nonexistent/GOT-10k"),
        (["--data", "imagenet:/data"], "got10k"),
        (["--data", "unlabeled:/nonexistent.mp4"], "not found"),
    ],
)
def test_bad_data_specs_are_one_line_errors(tmp_path, args, message):
    result = subprocess.run(
        cli("distill", "--teacher", TEACHER, "--students", "nanotrack-v3-s50", *args, "--out", str(tmp_path / "run"), "--quiet"),
        capture_output=True, text=True, env=ENV,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_teacher_and_resume_mistakes_are_one_line_errors(tmp_path):
    cases = [
        (["--teacher", "nanotrack-v3", "--students", "nanotrack-v3-s50"], "has no weights"),
        (["--teacher", TEACHER, "--students", "siamfc-alexnet-s50"], "a student is shrunk from a teacher of its family"),
        (["--teacher", TEACHER, "--students", "nanotrack-v3-s50", "--resume"], "nothing to resume"),
    ]
    for args, message in cases:
        result = subprocess.run(cli("distill", *args, "--out", str(tmp_path / "run"), "--quiet"), capture_output=True, text=True, env=ENV)
        assert result.returncode == 1, result.stderr
        assert message in result.stderr.strip().splitlines()[-1]


def test_a_siamrpn_student_trains(tmp_path):
    """SiamRPN's up-channel kernels are 5-d tensors, which Module.to(memory_format=channels_last) refuses: the
    trainer converts the 4-d ones only."""
    out = tmp_path / "rpn"
    config = quiet_config(tmp_path, validation=0)
    args = ["--epochs", "1", "--steps", "1", "--batch-size", "2", "--workers", "0", "--quiet"]
    run_ok(cli("train", "--model", "siamrpn-alexnet-s25", "--data", "synthetic:2", "--config", str(config), "--out", str(out), *args))
    assert steps_logged(out) == 1 and (out / "siamrpn-alexnet-s25.pt").is_file()


def test_a_resumed_log_keeps_the_columns_of_the_header_it_was_begun_with(tmp_path):
    from edgetrack.distill.trainer import LOG_TERMS, Logs

    # A run begun by a version that logged no dense_box_log: its rows must stay under its own header. It resumes
    # from its checkpoint at step 1, so the row of step 2 it logged before it was killed goes.
    old = ["step", "epoch", "lr", "student", *(t for t in LOG_TERMS if t != "dense_box_log"), "pairs_per_s"]
    (tmp_path / "log.csv").write_text(",".join(old) + "\n1,0,0.01,s,0.5,,,,,,,0.5,40.0\n2,0,0.01,s,0.7,,,,,,,0.7,40.0\n")
    logs = Logs(tmp_path, True, step=1)
    logs.losses(2, 0, 0.01, "s", {"soft": 0.25, "dense_box_log": 0.125, "total": 0.375}, 41.0)
    logs.close()
    rows = list(csv.DictReader((tmp_path / "log.csv").open(newline="")))
    assert list(rows[0]) == old and len(rows) == 2 and rows[0]["total"] == "0.5"
    assert rows[1] == {**dict.fromkeys(old, ""), "step": "2", "epoch": "0", "lr": "0.01", "student": "s", "soft": "0.25", "total": "0.375", "pairs_per_s": "41.0"}
    # A fresh log has every term's column.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    logs = Logs(fresh, True)
    logs.losses(1, 0, 0.01, "s", {"dense_box_log": 0.125, "total": 0.125}, 40.0)
    logs.close()
    (row,) = csv.DictReader((fresh / "log.csv").open(newline=""))
    assert row["dense_box_log"] == "0.125" and row["gt_cls"] == "" and list(row)[-1] == "pairs_per_s"
