"""``edgetrack profile``: stage timing, the report's schema and self-containment, agreement with ``eval``, paced
mode, and clean failures that leave no half-written report."""

from __future__ import annotations

import base64
import json
import os
import re
import time

import numpy as np
import pytest

from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.datasets import Sequence, load_dataset
from edgetrack.runtime.errors import InputError, OutputError
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.profile import ProfileSettings, open_profile_input, profile_tracker
from edgetrack.runtime.profile_record import REPORT_SCHEMA, ProfileReport
from edgetrack.runtime.profile_report import build_report, check_report_dir, write_report
from edgetrack.runtime.resources import meminfo_used_mb, smi_process_memory
from edgetrack.runtime.stopwatch import STAGES, StageClock, latency_stats
from edgetrack.runtime.tracker import SiameseTracker

from test_cli import edgetrack, one_error_line

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_latency_stats_match_hand_computed_percentiles():
    stats = latency_stats([0.001, 0.002, 0.003, 0.004])
    # numpy's linear interpolation: p50 of 1..4 is 2.5, p95 is 3 + 0.85 = 3.85, p99 is 3.97.
    assert (stats.count, stats.mean, stats.p50, stats.max) == (4, 2.5, 2.5, 4.0)
    assert stats.p95 == pytest.approx(3.85) and stats.p99 == pytest.approx(3.97)
    with pytest.raises(ValueError):
        latency_stats([])


def test_stage_clock_charges_each_lap_the_time_since_the_previous_mark():
    clock = StageClock()
    clock.start()
    time.sleep(0.02)
    clock.lap("decode")
    clock.lap("preprocess")
    time.sleep(0.01)
    clock.lap("decode")
    assert set(clock.seconds) == {"decode", "preprocess"}
    assert clock.seconds["decode"] >= 0.03 and clock.seconds["preprocess"] < 0.005


def test_gpu_memory_readings_are_parsed_from_their_real_formats():
    # nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits
    rows = [["4242", "312"], ["77", "1200"], ["4242", "16"]]
    assert smi_process_memory(rows, 4242) == 328.0
    assert smi_process_memory(rows, 5) is None
    meminfo = "MemTotal:        7989624 kB\nMemFree:          512000 kB\nMemAvailable:    5941624 kB\n"
    assert meminfo_used_mb(meminfo) == pytest.approx((7989624 - 5941624) / 1024)
    assert meminfo_used_mb("MemTotal: 10 kB\n") is None


def test_stage_marks_do_not_change_what_the_tracker_does(nanotrack_bundles, data):
    bundle = nanotrack_bundles["v2"]
    sequence = load_dataset(data / "sequences" / "Crossing").sequences[0]
    plain = track_sequence(SiameseTracker(bundle.meta, open_backend(bundle)), sequence)
    clock = StageClock()
    timed = track_sequence(SiameseTracker(bundle.meta, open_backend(bundle), clock=clock), sequence)
    np.testing.assert_array_equal(plain.boxes, timed.boxes)
    assert set(clock.seconds) == set(STAGES) - {"decode"}  # init marks the template, updates the rest


@pytest.fixture(scope="module")
def profiled(nanotrack_bundles, data, tmp_path_factory):
    """One CLI profile of NanoTrack v2 on the real Crossing sequence."""
    report = tmp_path_factory.mktemp("profile") / "report"
    run = edgetrack(
        "profile", nanotrack_bundles["v2"].path, "--source", data / "sequences" / "Crossing", "--frames", 60, "--warmup", 5, "--report", report
    )
    assert run.returncode == 0, run.stderr
    return report, run


def test_report_json_schema(profiled, nanotrack_bundles):
    folder, run = profiled
    report = json.loads((folder / "report.json").read_text())
    assert set(report) == {
        "schema", "tool", "created", "bundle", "run", "fps", "latency_ms", "memory", "cpu", "model", "environment", "timeline", "samples", "plots",
    }
    assert report["schema"] == 1 and report["bundle"]["name"] == "nanotrack-v2" and report["bundle"]["precision"] == "fp32"
    assert report["run"]["frames"] == 60 and report["run"]["dropped"] == 0 and report["run"]["mode"] == "offline"
    assert report["run"]["init"] == [205.0, 151.0, 17.0, 50.0]  # Crossing's first ground-truth box
    latency = report["latency_ms"]
    assert list(latency) == ["decode", "preprocess", "template", "search", "postprocess", "update", "end_to_end"]
    for name, stats in latency.items():
        assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"], name
        assert stats["count"] == (20 if name == "template" else 60)
    # update is exactly its three stages, and a frame's end-to-end time is its decode plus its update.
    assert latency["update"]["mean"] == pytest.approx(sum(latency[s]["mean"] for s in ("preprocess", "search", "postprocess")))
    assert latency["end_to_end"]["mean"] == pytest.approx(latency["decode"]["mean"] + latency["update"]["mean"])
    assert report["fps"]["tracker"] == pytest.approx(1000 / latency["update"]["mean"])
    assert report["fps"]["end_to_end"] <= report["fps"]["tracker"]
    stages = report["timeline"]["stages_ms"]
    assert set(stages) == {"decode", "preprocess", "search", "postprocess"} and all(len(v) == 60 for v in stages.values())
    memory = report["memory"]
    assert memory["rss_start_mb"] > 20 and memory["rss_peak_mb"] >= memory["rss_end_mb"] and memory["gpu"] is None
    assert memory["rss_growth_mb"] == pytest.approx(memory["rss_end_mb"] - memory["rss_start_mb"])
    assert 0 < report["cpu"]["utilisation_percent"] and report["cpu"]["seconds"] > 0
    files = nanotrack_bundles["v2"].model_paths("fp32")
    assert report["model"]["size_mb"] == pytest.approx(sum(p.stat().st_size for p in files) / 1e6)
    env = report["environment"]
    assert env["cores"] >= 1 and env["libraries"]["onnxruntime"] and env["backend"].startswith("onnxruntime")
    assert len(report["samples"]["seconds"]) == len(report["samples"]["rss_mb"]) >= 2
    for name, png in report["plots"].items():
        assert (folder / png).read_bytes().startswith(PNG_MAGIC), name
    assert "end-to-end" in run.stdout and "report.html" in run.stdout


def test_report_json_reads_back_as_the_typed_report_it_was_written_from(profiled):
    """``ProfileReport.from_json`` reads report.json field by field; ``to_json`` writes the same JSON again."""
    folder, _ = profiled
    raw = json.loads((folder / "report.json").read_text())
    report = ProfileReport.from_json(raw)
    assert report.bundle.name == "nanotrack-v2" and report.run.init == (205.0, 151.0, 17.0, 50.0) and report.memory.gpu is None
    assert report.latency_ms["update"].p50 == raw["latency_ms"]["update"]["p50"] and report.fps.tracker == raw["fps"]["tracker"]
    assert json.dumps(report.to_json()) == json.dumps(raw)
    assert ProfileReport.from_json(report.to_json()) == report
    with pytest.raises(ValueError, match="newer"):
        ProfileReport.from_json(raw | {"schema": REPORT_SCHEMA + 1})


def test_html_is_self_contained_and_every_section_has_numbers(profiled):
    folder, _ = profiled
    page = (folder / "report.html").read_text()
    # Nothing is fetched from elsewhere: no src or href that is not inline data.
    assert not re.search(r'(src|href)="(?!data:)', page)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3
    pngs = {(folder / f"{name}.png").read_bytes() for name in ("latency_breakdown", "latency_timeline", "memory")}
    assert {base64.b64decode(i) for i in images} == pngs
    sections = re.findall(r"<section id=\"(\w+)\">(.*?)</section>", page, re.S)
    assert [s[0] for s in sections] == ["summary", "latency", "timeline", "memory", "model", "environment"]
    for name, body in sections:
        cells = re.findall(r"<td>([^<]*)</td>", body)
        assert any(re.search(r"\d", c) for c in cells), name
    markdown = (folder / "report.md").read_text()
    assert "| search |" in markdown and "![Latency per stage](latency_breakdown.png)" in markdown


class VirtualTime:
    """A ``time.perf_counter`` that moves only when told: each network search and each frame decode takes a known
    time, and nothing else takes any, so an fps is known to the last digit."""

    SEARCH = 0.002
    DECODE = 0.005

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def backend(self, bundle, monkeypatch):
        """``bundle``'s backend, whose network search takes ``SEARCH`` seconds on this clock."""
        backend = open_backend(bundle)
        run_search = backend.run_search

        def run():
            self.now += self.SEARCH
            return run_search()

        monkeypatch.setattr(backend, "run_search", run)
        return backend

    def decoding(self, frames):
        def read(sequence):
            for image in frames(sequence):
                self.now += self.DECODE
                yield image

        return read


def test_profile_and_eval_time_the_same_work(nanotrack_bundles, data, monkeypatch):
    """Same bundle, same frames (all of bag after the first), on a clock where only the network search (2 ms) and
    decoding (5 ms) take time: eval's fps and profile's tracker fps are both 500, so neither counts decoding nor
    leaves the search out, and profile's end-to-end fps counts both (1 / 7 ms)."""
    clock = VirtualTime()
    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(Sequence, "frames", clock.decoding(Sequence.frames))
    bundle = nanotrack_bundles["v2"]
    sequence = load_dataset(data / "sequences" / "bag").sequences[0]

    evaluated = track_sequence(SiameseTracker(bundle.meta, clock.backend(bundle, monkeypatch)), sequence)

    stages = StageClock()
    tracker = SiameseTracker(bundle.meta, clock.backend(bundle, monkeypatch), clock=stages)
    run = profile_tracker(tracker, stages, open_profile_input(str(data / "sequences" / "bag")), ProfileSettings(warmup=0))

    assert evaluated.frames - 1 == run.frames == len(sequence) - 1
    assert evaluated.fps == pytest.approx(1 / VirtualTime.SEARCH)
    assert run.tracker_fps == pytest.approx(1 / VirtualTime.SEARCH)
    assert run.end_to_end_fps == pytest.approx(1 / (VirtualTime.SEARCH + VirtualTime.DECODE))
    assert np.allclose(run.stages["search"], VirtualTime.SEARCH) and np.allclose(run.stages["decode"], VirtualTime.DECODE)


def _profile(nanotrack_bundles, data, settings, sequence="Crossing"):
    bundle = nanotrack_bundles["v2"]
    clock = StageClock()
    tracker = SiameseTracker(bundle.meta, open_backend(bundle), clock=clock)
    return profile_tracker(tracker, clock, open_profile_input(str(data / "sequences" / sequence)), settings)


def test_paced_mode_feeds_frames_at_the_camera_rate(nanotrack_bundles, data):
    run = _profile(nanotrack_bundles, data, ProfileSettings(frames=40, warmup=2, mode="paced", fps=20))
    # The tracker (a few ms an update) is far faster than 20 fps, even on a busy machine: nothing is dropped, and
    # 40 frames take 40 periods.
    assert run.dropped == 0 and run.frames == 40
    assert run.wall_seconds == pytest.approx(40 / 20, rel=0.1)
    assert len(run.arrival_latency) == 40 and max(run.arrival_latency) < 1 / 20


def test_paced_mode_drops_frames_the_tracker_cannot_keep_up_with(nanotrack_bundles, data):
    # 5000 fps is a frame every 0.2 ms, several times faster than one update: most frames are replaced before
    # the tracker is free, and every offered frame is either tracked or dropped.
    run = _profile(nanotrack_bundles, data, ProfileSettings(frames=100, warmup=0, mode="paced", fps=5000))
    assert run.dropped > run.frames > 0 and run.dropped + run.frames == 100


def test_settings_refuse_nonsense():
    with pytest.raises(InputError, match="--frames"):
        ProfileSettings(frames=0)
    with pytest.raises(InputError, match="--fps"):
        ProfileSettings(fps=0)
    with pytest.raises(InputError, match="mode"):
        ProfileSettings(mode="realtime")


def test_bad_inputs_fail_in_one_line_and_leave_no_report(nanotrack_bundles, data, tmp_path):
    bundle = nanotrack_bundles["v2"].path
    report = tmp_path / "report"
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"not a video at all")
    for source, expected in (
        (tmp_path / "missing.mp4", "does not exist"),
        (corrupt, "cannot read video"),
        ("camera:57", "camera:57 does not open"),
        (data / "videos" / "bag.avi", "give the target with --init"),
        (data / "sequences", "holds 3 sequences"),
    ):
        line = one_error_line(edgetrack("profile", bundle, "--source", source, "--report", report))
        assert expected in line, line
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = one_error_line(edgetrack("profile", bundle, "--source", data / "sequences" / "bag", "--report", blocker / "report"))
    assert "cannot write a report" in line
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    line = one_error_line(edgetrack("profile", bundle, "--source", data / "sequences" / "bag", "--report", other))
    assert "holds other files" in line and (other / "notes.txt").read_text() == "mine"
    run = edgetrack("profile", bundle, "--source", data / "sequences" / "bag", "--frames", 0, "--report", report)
    assert run.returncode == 2 and "--frames" in run.stderr
    assert not report.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "broken.mp4", "other"]


def test_a_failed_write_keeps_the_previous_report_and_leaves_nothing_behind(nanotrack_bundles, data, tmp_path, monkeypatch):
    from edgetrack.runtime import profile_report
    from edgetrack.runtime.environment import describe_environment

    bundle = nanotrack_bundles["v2"]
    run = _profile(nanotrack_bundles, data, ProfileSettings(frames=10, warmup=0))
    report = build_report(run, bundle, "fp32", "onnxruntime", describe_environment("onnxruntime", None))
    folder = check_report_dir(tmp_path / "report")
    write_report(folder, report)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(profile_report, "render_html", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        write_report(folder, report)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_the_base_install_says_which_extra_profile_needs(nanotrack_bundles, data, tmp_path):
    base_python = os.environ.get("EDGETRACK_BASE_PYTHON")
    if not base_python:
        pytest.skip("EDGETRACK_BASE_PYTHON is not set (make test sets it to the runtime-only install)")
    run = edgetrack(
        "profile", nanotrack_bundles["v2"].path, "--source", data / "sequences" / "dat", "--report", tmp_path / "r", python=base_python
    )
    assert run.returncode == 1 and "pip install 'edgetrack[report]'" in run.stderr, run.stderr
    assert not (tmp_path / "r").exists()
