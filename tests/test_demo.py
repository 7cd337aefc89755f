"""``edgetrack demo`` end to end at a tiny budget: every step runs, the page is self-contained and holds the
measured numbers, the verdict says what the numbers say, and a bad --out fails at once in one line."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import re
import shutil

import pytest

pytest.importorskip("torch", reason="the demo trains: it needs the train extra (torch)")

from edgetrack.demo import DEMO_MARKER, EVAL_SEED_OFFSET, STEPS, DemoSettings, TrainingBudget, compare, prepare_out, run_demo  # noqa: E402
from edgetrack.demo_page import LEGEND_HEIGHT  # noqa: E402
from edgetrack.runtime.errors import InputError, OutputError  # noqa: E402

from test_cli import edgetrack, one_error_line  # noqa: E402

#: Every step at its smallest: 2 steps of 2 pairs per run, 2 evaluation sequences of 20 frames.
TINY = DemoSettings(
    teacher_budget=TrainingBudget(epochs=1, steps_per_epoch=2, batch_size=2),
    student_budget=TrainingBudget(epochs=1, steps_per_epoch=2, batch_size=2),
    train_sequences=4,
    eval_sequences=2,
    eval_length=20,
    calib_sequences=1,
    calib_frames=10,
    profile_warmup=2,
    clip_frames=10,
    progress=False,
)
MODELS = ("teacher", "student-1", "student-2", "alone")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    summary = run_demo(out, TINY)
    return out, summary


def test_summary_holds_every_number_and_the_time_of_every_step(demo):
    out, summary = demo
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert {"settings", "teacher", "student", "data", "table", "comparison", "curves", "clip", "environment", "timings_s", "files"} <= set(summary)
    assert set(summary["timings_s"]) == {*STEPS, "total"}
    assert summary["timings_s"]["total"] >= sum(v for k, v in summary["timings_s"].items() if k != "total") - 0.5
    # Evaluation sequences come from a seed that no training sequence uses.
    assert all(name.startswith(f"synthetic-{TINY.seed + EVAL_SEED_OFFSET}-") for name in summary["data"]["eval_sequences"])
    assert len(summary["data"]["eval_sequences"]) == 2


def test_table_has_measured_numbers_for_every_model_and_precision(demo):
    out, summary = demo
    rows = summary["table"]
    assert {(r["key"], r["precision"]) for r in rows if r["precision"] == "fp32"} == {(key, "fp32") for key in MODELS}
    # int8 is built for every student and either kept or shown as refused, never dropped silently.
    assert {r["key"] for r in rows if r["precision"] == "int8"} == {"student-1", "student-2", "alone"}
    page = (out / "index.html").read_text()
    for row in rows:
        assert row["params"] > 0 and row["size_mb"] > 0 and 0 <= row["auc"] <= 1 and row["fps"] > 0
        if row["status"] == "ok":
            assert math.isfinite(row["p50_ms"]) and row["p50_ms"] > 0 and row["rss_mb"] > 0
            assert (out / row["profile"]).is_file()
            assert f"{row['auc']:.3f}" in page and f"{row['p50_ms']:.2f}" in page
        else:
            assert row["status"] == "refused" and "accuracy gate" in row["note"]
    assert page.count("<tr>") >= len(rows) + 1
    teacher = next(r for r in rows if r["key"] == "teacher")
    assert all(r["params"] < teacher["params"] for r in rows if r["key"] != "teacher")


def test_numbers_are_what_edgetrack_eval_measures_on_the_written_sequences(demo, tmp_path):
    out, summary = demo
    run = edgetrack("eval", out / "bundles" / "student-1.etb", "--dataset", out / summary["data"]["eval"], "--out", tmp_path)
    assert run.returncode == 0, run.stderr
    again = json.loads((tmp_path / "summary.json").read_text())["mean"]["auc"]
    row = next(r for r in summary["table"] if (r["key"], r["precision"]) == ("student-1", "fp32"))
    assert again == pytest.approx(row["auc"], abs=1e-9)


def test_index_is_self_contained_with_plots_and_an_animated_clip(demo):
    out, summary = demo
    page = (out / "index.html").read_text()
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/") for s in sources)
    png = base64.b64decode(sources[0].split(",", 1)[1])
    gif = base64.b64decode(sources[1].split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and gif.startswith(b"GIF89a")
    from PIL import Image

    with Image.open(out / "clip.gif") as clip:
        assert clip.n_frames == TINY.clip_frames and clip.size == (320, 240 + LEGEND_HEIGHT)
    assert summary["clip"]["key"].startswith("student-")


def test_verdict_says_what_the_numbers_say(demo):
    out, summary = demo
    comparison = summary["comparison"]
    alone = next(r["auc"] for r in summary["table"] if (r["key"], r["precision"]) == ("alone", "fp32"))
    students = {r["key"]: r["auc"] for r in summary["table"] if r["key"].startswith("student-") and r["precision"] == "fp32"}
    beaten = [key for key, auc in students.items() if auc > alone]
    sentence = comparison["sentence"]
    if len(beaten) == len(students):
        assert sentence.startswith("The distilled students beat")
    elif not beaten:
        assert sentence.startswith("The distilled students do not beat")
    else:
        assert sentence.startswith(f"{len(beaten)} of the {len(students)}")
    assert f"against {alone:.3f}" in sentence
    assert html.escape(sentence) in (out / "index.html").read_text()


def test_compare_is_honest_either_way():
    def row(key, precision, per_sequence):
        return {"key": key, "precision": precision, "auc": sum(per_sequence) / 2, "auc_per_sequence": dict(zip("ab", per_sequence))}

    def rows(alone, one, two):
        return [row("alone", "fp32", alone), row("student-1", "fp32", one), row("student-2", "fp32", two), row("student-1", "int8", (0.99, 0.99))]

    lost = compare(rows((0.5, 0.5), (0.4, 0.4), (0.4, 0.5)), 2)
    assert not lost["all_beat"] and lost["sentence"].startswith("The distilled students do not beat")
    assert "student-1 AUC 0.400 (-0.100 ± 0.000)" in lost["sentence"] and "against 0.500" in lost["sentence"]
    # differences -0.1 and 0.0: standard deviation 0.0707, over the square root of 2
    assert lost["difference_standard_error"]["student-2"] == pytest.approx(0.05)
    won = compare(rows((0.3, 0.3), (0.4, 0.4), (0.45, 0.45)), 2)
    assert won["all_beat"] and won["sentence"].startswith("The distilled students beat") and "(+0.150 ± 0.000)" in won["sentence"]
    mixed = compare(rows((0.42, 0.42), (0.4, 0.4), (0.45, 0.45)), 2)
    assert mixed["beats"] == {"student-1": False, "student-2": True} and mixed["sentence"].startswith("1 of the 2")


def test_out_is_checked_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = one_error_line(edgetrack("demo", "--out", blocker / "demo"))
    assert "cannot write the demo" in line and "--out" in line
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data").mkdir()
    with pytest.raises(OutputError, match="holds files the demo did not write"):
        prepare_out(tmp_path / "mine")
    assert (tmp_path / "mine" / "data").is_dir()


def test_a_previous_demo_is_cleared_and_nothing_else(demo, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(demo[0], out, ignore=shutil.ignore_patterns("runs", "profiles"))
    (out / "mine.txt").write_text("keep me")
    prepare_out(out)
    assert sorted(p.name for p in out.iterdir()) == [DEMO_MARKER, "mine.txt"]


def test_a_given_teacher_is_distilled_from_instead_of_training_one(data, tmp_path):
    teacher = f"nanotrack-v3:{data / 'models/nanotrack/v3/nanotrackv3.pth'}"
    settings = dataclasses.replace(TINY, teacher=teacher, eval_sequences=1, eval_length=12, clip_frames=5)
    summary = run_demo(tmp_path / "demo", settings)
    assert summary["teacher"]["source"] == teacher and summary["student"] == "nanotrack-v3-s50"
    assert summary["timings_s"]["teacher"] < 1
    assert not (tmp_path / "demo" / "runs" / "teacher").exists()
    rows = {(r["key"], r["precision"]): r for r in summary["table"]}
    # The published teacher tracks; nothing trained for 2 steps of 2 pairs does.
    assert rows["teacher", "fp32"]["params"] > 2.5 * rows["alone", "fp32"]["params"]
    assert rows["teacher", "fp32"]["auc"] > rows["alone", "fp32"]["auc"]
    with pytest.raises(InputError, match="not found"):
        run_demo(tmp_path / "missing", dataclasses.replace(TINY, teacher="nanotrack-v3:nowhere.pth"))
    assert not (tmp_path / "missing").exists()


def test_help_has_an_example():
    run = edgetrack("demo", "--help")
    assert run.returncode == 0 and "Example" in run.stdout and "--teacher" in run.stdout
