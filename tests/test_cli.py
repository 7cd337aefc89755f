"""The command line end to end: eval and track on real data, their files, and their one-line errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgetrack.runtime.datasets import read_groundtruth
from edgetrack.runtime.metrics import rect_iou


def edgetrack(*args, python=sys.executable, **kwargs):
    return subprocess.run([python, "-m", "edgetrack.cli", *map(str, args)], capture_output=True, text=True, **kwargs)


def one_error_line(run) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), (run.returncode, run.stderr)
    return lines[0]


def test_help_has_examples():
    for command in ("import-nanotrack", "eval", "track"):
        run = edgetrack(command, "--help")
        assert run.returncode == 0 and "Example" in run.stdout, command


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "nanotrack-v1-s50"], "train needs the train extra (torch is missing): pip install 'edgetrack[train]'"),
        (["distill", "--teacher", "a:b", "--students", "s"], "distill needs the train extra (torch is missing): pip install 'edgetrack[train]'"),
        (["export", "-o", "x.etb"], "export needs the train and deploy extras (torch is missing): pip install 'edgetrack[train,deploy]'"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(args, message, tmp_path):
    code = "import sys; sys.modules['torch'] = None; from edgetrack.cli import main; main()"
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1 and run.stderr.strip() == f"Error: {message}", run.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_modules_of_each_extra_are_pyprojects():
    """`requires` recognises an extra's missing module by name: the names must follow pyproject.toml."""
    tomllib = pytest.importorskip("tomllib")
    from edgetrack.cli.errors import EXTRA_MODULES

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, modules in EXTRA_MODULES.items():
        names = [re.match(r"[A-Za-z0-9_.-]+", requirement).group().lower() for requirement in extras[extra]]
        assert tuple({"pyyaml": "yaml"}.get(name, name) for name in names) == modules, extra


def test_eval_writes_summary_and_results(nanotrack_bundles, data, tmp_path):
    out = tmp_path / "eval"
    run = edgetrack("eval", nanotrack_bundles["v2"].path, "--dataset", data / "sequences", "--out", out)
    assert run.returncode == 0, run.stderr
    assert "skipping tennis_unlabeled" in run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["sequences"]) == {"Crossing", "bag", "dat"}
    for name, frames in (("Crossing", 120), ("bag", 196), ("dat", 105)):
        scores = summary["sequences"][name]
        assert set(scores) == {"auc", "precision", "norm_precision", "fps", "frames"}
        assert scores["frames"] == frames and scores["fps"] > 0
        lines = (out / f"{name}.txt").read_text().splitlines()
        assert len(lines) == frames and len(lines[0].split(",")) == 4
    assert summary["sequences"]["Crossing"]["auc"] == pytest.approx(0.742, abs=0.01)
    mean = summary["mean"]
    assert mean["auc"] == pytest.approx(np.mean([s["auc"] for s in summary["sequences"].values()]))
    assert mean["frames"] == 421
    # the printed table carries the same numbers
    assert f"{summary['sequences']['bag']['auc']:.3f}" in run.stdout


def test_eval_on_a_video_with_its_groundtruth(nanotrack_bundles, data, tmp_path):
    run = edgetrack(
        "eval", nanotrack_bundles["v2"].path,
        "--dataset", data / "videos" / "bag.avi",
        "--groundtruth", data / "sequences" / "bag" / "groundtruth.txt",
        "--out", tmp_path,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    # the video's frames are the sequence's, recompressed: the score barely moves
    assert summary["sequences"]["bag"]["auc"] == pytest.approx(0.763, abs=0.03)


def test_track_writes_results_and_a_playable_recording(nanotrack_bundles, data, tmp_path):
    results, video = tmp_path / "bag.txt", tmp_path / "bag.avi"
    truth = read_groundtruth(data / "sequences" / "bag" / "groundtruth.txt")
    init = ",".join(f"{v:.2f}" for v in truth[0])
    run = edgetrack(
        "track", nanotrack_bundles["v2"].path, "--source", data / "videos" / "bag.avi",
        "--init", init, "--results", results, "--save", video, "--no-show",
    )
    assert run.returncode == 0, run.stderr
    assert "tracked 196 frames" in run.stdout
    rows = np.loadtxt(results, delimiter=",")
    assert rows.shape == (196, 6)
    assert rect_iou(rows[:, :4], truth).mean() > 0.6
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 196
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag.avi", "bag.txt"]


def test_track_on_an_image_folder(nanotrack_bundles, data, tmp_path):
    results = tmp_path / "r.txt"
    run = edgetrack(
        "track", nanotrack_bundles["v3"].path, "--source", data / "sequences" / "Crossing" / "img",
        "--init", "205,151,17,50", "--results", results, "--no-show",
    )
    assert run.returncode == 0, run.stderr
    assert len(results.read_text().splitlines()) == 120


@pytest.mark.parametrize(
    "init, message",
    [("10,10,0,20", "no area"), ("5000,10,20,20", "outside the 480x360 frame")],
)
def test_track_bad_init_box(nanotrack_bundles, data, tmp_path, init, message):
    results = tmp_path / "r.txt"
    run = edgetrack("track", nanotrack_bundles["v2"].path, "--source", data / "videos" / "bag.avi", "--init", init, "--results", results)
    assert message in one_error_line(run)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_track_malformed_init_box(nanotrack_bundles, data):
    run = edgetrack("track", nanotrack_bundles["v2"].path, "--source", data / "videos" / "bag.avi", "--init", "1,2,3")
    assert run.returncode == 2 and "expected x,y,w,h" in run.stderr


def test_unreadable_video(nanotrack_bundles, tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"this is not a video" * 100)
    run = edgetrack("track", nanotrack_bundles["v2"].path, "--source", fake, "--init", "1,1,10,10")
    assert "cannot read video" in one_error_line(run)
    run = edgetrack("track", nanotrack_bundles["v2"].path, "--source", tmp_path / "missing.mp4", "--init", "1,1,10,10")
    assert "does not exist" in one_error_line(run)
    # FFmpeg would play a text file as ANSI art; it is not a video to track in
    text = tmp_path / "groundtruth.txt"
    text.write_text("1,2,3,4\n" * 50)
    run = edgetrack("track", nanotrack_bundles["v2"].path, "--source", text, "--init", "1,1,10,10")
    assert "is not a video file" in one_error_line(run)


def test_unwritable_save_path(nanotrack_bundles, data, tmp_path):
    run = edgetrack(
        "track", nanotrack_bundles["v2"].path, "--source", data / "videos" / "bag.avi",
        "--init", "292,128,146,132", "--save", tmp_path / "no" / "such" / "dir" / "out.mp4",
    )
    assert "does not exist" in one_error_line(run)


def test_unwritable_eval_output(nanotrack_bundles, data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    run = edgetrack("eval", nanotrack_bundles["v2"].path, "--dataset", data / "sequences" / "dat", "--out", blocker / "out")
    assert "cannot write results to" in one_error_line(run)


@pytest.fixture(scope="module")
def long_video(data, tmp_path_factory):
    """oneperson.mp4 at half size, four times over (1,768 frames): long enough that Ctrl-C always lands
    mid-stream, however fast the machine tracks."""
    path = tmp_path_factory.mktemp("long") / "long.avi"
    capture = cv2.VideoCapture(str(data / "videos" / "oneperson.mp4"))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(cv2.resize(frame, (310, 185)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (310, 185))
    for _ in range(4):
        for frame in frames:
            writer.write(frame)
    writer.release()
    return path, 4 * len(frames)


def signal_while_recording(bundle, source, tmp_path, signum):
    """Start ``track`` recording ``source`` into ``tmp_path/o.avi`` (results in ``r.txt``), send ``signum`` once the
    recording has frames, and return (exit code, stdout, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "edgetrack.cli", "track", str(bundle),
         "--source", str(source), "--init", "150,50,25,75",
         "--results", str(tmp_path / "r.txt"), "--save", str(tmp_path / "o.avi"), "--no-show"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A background job (as CI may run us) inherits SIGINT ignored; a terminal's Ctrl-C, systemd's or docker's
        # stop are delivered to a process with the default handler.
        preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while not any(p.name.endswith(".partial.avi") and p.stat().st_size > 0 for p in tmp_path.iterdir()):
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def test_ctrl_c_keeps_what_was_tracked(nanotrack_bundles, long_video, tmp_path):
    source, total = long_video
    results, video = tmp_path / "r.txt", tmp_path / "o.avi"
    code, stdout, stderr = signal_while_recording(nanotrack_bundles["v2"].path, source, tmp_path, signal.SIGINT)
    assert code == 130, stderr
    assert "(interrupted)" in stdout
    written = len(results.read_text().splitlines())
    assert 0 < written < total
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == written  # the recording was closed properly and is playable to its last frame


def test_runtime_commands_never_import_torch(nanotrack_bundles, data, tmp_path):
    """`eval`, `track` and `compare` in an environment with only the base install (the Makefile's .venv-base); outside
    `make test`, the same commands run here with torch made unimportable."""
    base_python = os.environ.get("EDGETRACK_BASE_PYTHON")
    probe = (
        "import sys\n"
        "if len(sys.argv) > 1 and sys.argv[1] == 'block':\n"
        "    import importlib.abc\n"
        "    class Block(importlib.abc.MetaPathFinder):\n"
        "        def find_spec(self, name, path=None, target=None):\n"
        "            if name.split('.')[0] == 'torch': raise ImportError('torch is blocked')\n"
        "    sys.meta_path.insert(0, Block())\n"
        "try:\n"
        "    import torch\n"
        "    has_torch = True\n"
        "except ImportError:\n"
        "    has_torch = False\n"
        "from edgetrack.cli import main\n"
        "code = 0\n"
        "for argv in ({commands}):\n"
        "    try:\n"
        "        main(argv, standalone_mode=False)\n"
        "    except SystemExit as exit:\n"
        "        code = exit.code\n"
        "print('has_torch', has_torch, 'torch_loaded', 'torch' in sys.modules, 'code', code)\n"
    )
    commands = [
        ["eval", str(nanotrack_bundles["v2"].path), "--dataset", str(data / "sequences" / "dat"), "--out", str(tmp_path / "e")],
        ["track", str(nanotrack_bundles["v2"].path), "--source", str(data / "sequences" / "dat" / "color"), "--init", "10,10,30,30", "--no-show", "--results", str(tmp_path / "t.txt")],
        ["compare", str(nanotrack_bundles["v2"].path), "--backend", "onnxruntime", "--backend", "opencv", "--dataset", str(data / "sequences" / "dat")],
    ]
    script = probe.format(commands=repr(commands))
    if base_python:
        run = subprocess.run([base_python, "-c", script], capture_output=True, text=True)
        assert "has_torch False torch_loaded False code 0" in run.stdout, run.stdout + run.stderr
    else:
        run = subprocess.run([sys.executable, "-c", script, "block"], capture_output=True, text=True)
        assert "torch_loaded False code 0" in run.stdout, run.stdout + run.stderr
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["sequences"]["dat"]["frames"] == 105
    assert len((tmp_path / "t.txt").read_text().splitlines()) == 105
