"""Reliability of output folders: ``profile --report``, ``eval --out`` and ``bench --out`` replace or remove only what
they wrote themselves, leave no stale result behind, and a failed run leaves no folder it created."""

from __future__ import annotations

import json

import pytest

from edgetrack.runtime.errors import OutputError
from edgetrack.runtime.output_folder import claim_output, manifest_name
from test_cli import edgetrack, one_error_line


def test_profile_refuses_a_folder_that_merely_contains_a_report(nanotrack_bundles, data, tmp_path):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "report.json").write_text("{}")
    (folder / "thesis.tex").write_text("my thesis")
    line = one_error_line(edgetrack("profile", nanotrack_bundles["v2"].path, "--source", data / "sequences" / "dat", "--report", folder))
    assert "holds other files (thesis.tex)" in line
    assert sorted(p.name for p in folder.iterdir()) == ["report.json", "thesis.tex"]


def test_profile_replaces_its_own_report_and_a_report_from_before_manifests(nanotrack_bundles, data, tmp_path):
    folder = tmp_path / "report"
    args = ("profile", nanotrack_bundles["v2"].path, "--source", data / "sequences" / "dat", "--frames", 5, "--report", folder)
    assert edgetrack(*args).returncode == 0
    listed = json.loads((folder / manifest_name("edgetrack profile")).read_text())["files"]
    assert set(listed) == {p.name for p in folder.iterdir()} - {manifest_name("edgetrack profile")}
    assert edgetrack(*args).returncode == 0
    (folder / manifest_name("edgetrack profile")).unlink()
    assert edgetrack(*args).returncode == 0, "a folder of the report's own names is a report written before manifests"
    (folder / "notes.txt").write_text("mine")
    assert "holds other files (notes.txt)" in one_error_line(edgetrack(*args))
    assert (folder / "notes.txt").read_text() == "mine"


def test_eval_keeps_the_users_files_and_removes_its_stale_ones(nanotrack_bundles, data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    bundle = nanotrack_bundles["v2"].path
    assert edgetrack("eval", bundle, "--dataset", data / "sequences", "--out", out).returncode == 0
    assert {"Crossing.txt", "bag.txt", "dat.txt", "summary.json", "notes.txt"} <= {p.name for p in out.iterdir()}
    assert edgetrack("eval", bundle, "--dataset", data / "sequences" / "dat", "--out", out).returncode == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["dat.txt", "notes.txt", "summary.json"]
    assert (out / "notes.txt").read_text() == "mine"
    assert set(json.loads((out / manifest_name("edgetrack eval")).read_text())["files"]) == {"dat.txt", "summary.json"}


def test_eval_never_overwrites_a_file_it_did_not_write(nanotrack_bundles, data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dat.txt").write_text("my notes on dat")
    line = one_error_line(edgetrack("eval", nanotrack_bundles["v2"].path, "--dataset", data / "sequences" / "dat", "--out", out))
    assert "already holds dat.txt, which edgetrack eval did not write" in line
    assert [p.name for p in out.iterdir()] == ["dat.txt"] and (out / "dat.txt").read_text() == "my notes on dat"


def test_an_eval_folder_from_before_manifests_is_recognised_by_its_summary(nanotrack_bundles, data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"sequences": {"Crossing": {}, "dat": {}}}))
    (out / "Crossing.txt").write_text("1,2,3,4\n")
    (out / "dat.txt").write_text("1,2,3,4\n")
    (out / "bag.txt").write_text("the user's, not listed in the summary\n")
    assert edgetrack("eval", nanotrack_bundles["v2"].path, "--dataset", data / "sequences" / "dat", "--out", out).returncode == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["bag.txt", "dat.txt", "summary.json"]


def test_bench_never_overwrites_a_report_it_did_not_write(nanotrack_bundles, data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "bench.md").write_text("my bench notes")
    line = one_error_line(edgetrack("bench", nanotrack_bundles["v2"].path, "--dataset", data / "sequences" / "dat", "--out", out))
    assert "already holds bench.md, which edgetrack bench did not write" in line
    assert (out / "bench.md").read_text() == "my bench notes"


def test_a_failed_run_removes_the_folders_it_created_and_nothing_else(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("mine")
    for folder, kept in ((tmp_path / "runs" / "eval" / "x", tmp_path), (existing, existing)):
        with pytest.raises(RuntimeError), claim_output(folder, "edgetrack eval", "--out", ["x.txt"]):
            (folder / "x.txt").write_text("half")
            raise RuntimeError("tracking failed")
        assert kept.is_dir()
    assert not (tmp_path / "runs").exists()
    assert (existing / "mine.txt").read_text() == "mine"


def test_a_folder_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file: give a folder"):
        claim_output(blocker, "edgetrack eval", "--out", [])
