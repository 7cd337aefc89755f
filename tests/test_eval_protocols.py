"""``edgetrack eval`` by each protocol and layout, end to end on a hand-built bundle and moving-square sequences:
a GOT-10k val split gets got10k's scores and the server's files, a test split gets the files and no scores, the
VOT protocol and the latency-aware mode write what their library functions compute, and options that cannot go
together are refused in one line."""

from __future__ import annotations

import json
import zipfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgetrack.cli import main
from edgetrack.runtime.benchmark_metrics import benchmark_summary
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.open_tracker import open_tracker
from edgetrack.runtime.vot_protocol import run_sequence, summarise

import synthetic


def write_frames(folder, frames, name="{:08d}.jpg", first=1):
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / name.format(i + first)), frame)


def rows(boxes) -> str:
    return "".join(",".join(f"{v:g}" for v in box) + "\n" for box in boxes)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return synthetic.siamrpn_bundle(tmp_path_factory.mktemp("eval") / "rpn.etb").path


@pytest.fixture(scope="module")
def got10k(tmp_path_factory):
    """A GOT-10k root with a val split (two 12-frame sequences, one with an absent and a fully covered frame) and a
    test split (first box only)."""
    root = tmp_path_factory.mktemp("got10k")
    for split, names in (("val", ("GOT-10k_Val_000001", "GOT-10k_Val_000002")), ("test", ("GOT-10k_Test_000001",))):
        for i, name in enumerate(names):
            frames, truth = synthetic.moving_square(frames=12, step=(3 + 2 * i, 2))
            write_frames(root / split / name, frames)
            if split == "test":
                (root / split / name / "groundtruth.txt").write_text(rows(truth[:1]))
                continue
            (root / split / name / "groundtruth.txt").write_text(rows(truth))
            (root / split / name / "meta_info.ini").write_text("[METAINFO]\nobject_class: square\n")
            (root / split / name / "absence.label").write_text("".join("1\n" if f == 5 else "0\n" for f in range(12)))
            (root / split / name / "cover.label").write_text("".join("0\n" if f == 7 else "8\n" for f in range(12)))
        (root / split / "list.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_got10k_val_gets_got10k_scores_and_the_server_files(bundle, got10k, tmp_path):
    out = tmp_path / "out"
    result = run("eval", bundle, "--dataset", got10k / "val", "--out", out)
    assert result.exit_code == 0, result.output

    data = load_dataset(got10k / "val")
    assert data.layout == "got10k"
    with open_tracker(bundle) as tracker:
        results = [track_sequence(tracker, s) for s in data.sequences]
    expected = benchmark_summary("got10k", results, data.sequences).to_json()
    written = json.loads((out / "benchmark.json").read_text())
    assert (written["ao"], written["sr50"], written["sr75"]) == (expected["ao"], expected["sr50"], expected["sr75"])
    with zipfile.ZipFile(out / "got10k.zip") as archive:
        names = set(archive.namelist())
    assert {"GOT-10k_Val_000001/GOT-10k_Val_000001_001.txt", "GOT-10k_Val_000001/GOT-10k_Val_000001_time.txt"} <= names
    boxes = np.loadtxt(out / "got10k" / "GOT-10k_Val_000002" / "GOT-10k_Val_000002_001.txt", delimiter=",")
    np.testing.assert_allclose(boxes, results[1].boxes, atol=5e-4)
    manifest = json.loads((out / ".edgetrack-eval.json").read_text())["files"]
    assert {"benchmark.json", "got10k", "got10k.zip", "summary.json"} <= set(manifest)
    # The summary leaves out frame 5 (absent) and frame 7 (fully covered) as it does NaN rows.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lost"]["GOT-10k_Val_000001"]["absent_frames"] == 2


def test_got10k_test_split_is_tracked_for_the_server_but_not_scored(bundle, got10k, tmp_path):
    out = tmp_path / "out"
    result = run("eval", bundle, "--dataset", got10k / "test", "--out", out)
    assert result.exit_code == 0, result.output
    assert not (out / "benchmark.json").exists()
    assert (out / "got10k.zip").is_file() and (out / "GOT-10k_Test_000001.txt").is_file()
    assert json.loads((out / "summary.json").read_text())["sequences"] == {}
    row = next(line for line in result.output.splitlines() if line.startswith("GOT-10k_Test_000001"))
    assert row.split()[2] == "-"

    for extra in (("--realtime", "30"), ("--protocol", "vot")):
        refused = run("eval", bundle, "--dataset", got10k / "test", "--out", tmp_path / "refused", *extra)
        assert refused.exit_code != 0 and "first frame only" in refused.output
        assert not (tmp_path / "refused").exists()


def test_vot_protocol_writes_what_the_supervised_run_scores(bundle, tmp_path):
    """A square that jumps away mid-sequence makes the tracker fail, so the run is re-initialised."""
    frames, truth = synthetic.moving_square(frames=30, step=(2, 1))
    for i in range(15, 30):
        frames[i] = np.roll(frames[i], 150, axis=1)
        truth[i, 0] += 150
    folder = tmp_path / "jump"
    write_frames(folder / "color", frames)
    polygons = [(x, y, x + w, y, x + w, y + h, x, y + h) for x, y, w, h in truth]
    (folder / "groundtruth.txt").write_text(rows(polygons))
    out = tmp_path / "out"
    result = run("eval", bundle, "--dataset", folder, "--protocol", "vot", "--out", out)
    assert result.exit_code == 0, result.output

    (sequence,) = load_dataset(folder).sequences
    with open_tracker(bundle) as tracker:
        expected = summarise([run_sequence(tracker, sequence)])
    written = json.loads((out / "vot.json").read_text())
    assert written["failures_total"] == expected.failures_total >= 1
    assert written["accuracy"] == expected.accuracy
    assert (out / "jump.txt").is_file()


def test_realtime_eval_and_refused_combinations(bundle, got10k, tmp_path):
    out = tmp_path / "out"
    result = run("eval", bundle, "--dataset", got10k / "val", "--realtime", "30", "--threads", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert "realtime at 30 fps" in result.output
    assert json.loads((out / "summary.json").read_text())["mean"]["frames"] == 24

    both = run("eval", bundle, "--dataset", got10k / "val", "--realtime", "30", "--protocol", "vot")
    assert both.exit_code != 0 and "--realtime applies to the one-pass protocol" in both.output
    assert run("eval", bundle, "--dataset", got10k / "val", "--realtime", "0").exit_code != 0


def test_long_term_eval_runs_the_long_term_tracker(bundle, got10k, tmp_path):
    out = tmp_path / "out"
    result = run("eval", bundle, "--dataset", got10k / "val", "--long-term", "--out", out)
    assert result.exit_code == 0, result.output
    data = load_dataset(got10k / "val")
    with open_tracker(bundle, long_term=True) as tracker:
        assert tracker.long_term
        expected = [track_sequence(tracker, s) for s in data.sequences]
    for r in expected:
        np.testing.assert_allclose(np.loadtxt(out / f"{r.name}.txt", delimiter=","), r.boxes, atol=5e-3)
