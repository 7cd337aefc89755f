"""Benchmark result files: byte for byte what the got10k toolkit writes, the zips its report and the TrackingNet
server expect, and folders that are replaced whole or not at all."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgetrack.runtime.errors import InputError, OutputError
from edgetrack.runtime.evaluate import SequenceResult
from edgetrack.runtime.metrics import LostScores, OpeScores
from edgetrack.runtime.result_files import write_benchmark_files


def got10k_experiments():
    """got10k.experiments (it imports `six` without declaring it; the dev extra installs six)."""
    import got10k.experiments as experiments

    return experiments


def result(name: str, boxes, update_seconds: float = 1.0) -> SequenceResult:
    boxes = np.asarray(boxes, dtype=np.float64)
    return SequenceResult(name, boxes, OpeScores(0.0, 0.0, 0.0), LostScores(0, 0, 0, 0), 0.0, len(boxes), update_seconds)


def tracks(rng: np.random.Generator) -> list[SequenceResult]:
    return [result(name, rng.uniform(-5, 300, (frames, 4))) for name, frames in (("seqA", 7), ("seqB", 4))]


def test_got10k_files_are_what_got10k_records(tmp_path):
    experiments = got10k_experiments()
    rng = np.random.default_rng(0)
    results = tracks(rng)
    times = {r.name: rng.uniform(0.001, 0.1, r.frames) for r in results}
    files = write_benchmark_files("got10k", tmp_path / "out" / "edge", results, times)

    for r in results:
        reference = tmp_path / "got10k" / r.name / f"{r.name}_001.txt"
        experiments.ExperimentGOT10k._record(None, str(reference), r.boxes, times[r.name])
        for suffix in ("001", "time"):
            ours = (files.folder / r.name / f"{r.name}_{suffix}.txt").read_bytes()
            assert ours == (reference.parent / f"{r.name}_{suffix}.txt").read_bytes()
    assert sorted(p.name for p in files.folder.iterdir()) == ["seqA", "seqB"]
    assert files.names == ("edge", "edge.zip")


def test_got10k_zip_holds_what_got10k_compresses_for_the_server(tmp_path):
    results = tracks(np.random.default_rng(1))
    files = write_benchmark_files("got10k", tmp_path / "edge", results)
    # got10k's report on the test split: compress('.', '../NAME') from inside the result folder.
    reference = shutil.make_archive(str(tmp_path / "reference"), "zip", files.folder)
    with zipfile.ZipFile(files.archive) as ours, zipfile.ZipFile(reference) as theirs:
        assert sorted(ours.namelist()) == sorted(theirs.namelist())
        for name in theirs.namelist():
            assert ours.read(name) == theirs.read(name)
    # Per-frame times default to the mean update time of each frame.
    lines = (files.folder / "seqA" / "seqA_time.txt").read_text().splitlines()
    assert lines == [f"{1 / 6:.8f}"] * 7


def test_trackingnet_zip_has_the_files_at_its_root(tmp_path):
    results = [result("Zz_1", [[1, 2, 3, 4], [1.23456, -2, 30.5, 40]]), result("car_7", [[0, 0, 1, 1]])]
    files = write_benchmark_files("trackingnet", tmp_path / "trackingnet", results)
    assert files.archive == tmp_path / "trackingnet.zip"
    with zipfile.ZipFile(io.BytesIO(files.archive.read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["Zz_1.txt", "car_7.txt"]
        assert archive.read("Zz_1.txt").decode() == "1.000,2.000,3.000,4.000\n1.235,-2.000,30.500,40.000\n"
    assert (files.folder / "car_7.txt").read_text() == "0.000,0.000,1.000,1.000\n"


@pytest.mark.parametrize("benchmark", ["otb", "uav123", "lasot"])
def test_one_txt_per_sequence_as_got10k_records_otb(tmp_path, benchmark):
    experiments = got10k_experiments()
    results = tracks(np.random.default_rng(2))
    files = write_benchmark_files(benchmark, tmp_path / benchmark, results)
    assert files.archive is None
    assert sorted(p.name for p in files.folder.iterdir()) == ["seqA.txt", "seqB.txt"]
    reference = tmp_path / "reference" / "seqA.txt"
    experiments.ExperimentOTB._record(None, str(reference), results[0].boxes, np.ones(results[0].frames))
    assert (files.folder / "seqA.txt").read_bytes() == reference.read_bytes()


def test_a_second_write_replaces_the_folder_whole(tmp_path):
    rng = np.random.default_rng(3)
    write_benchmark_files("got10k", tmp_path / "edge", tracks(rng))
    write_benchmark_files("got10k", tmp_path / "edge", [result("only", [[1, 1, 2, 2]])])
    assert [p.name for p in (tmp_path / "edge").iterdir()] == ["only"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edge", "edge.zip"]
    assert zipfile.ZipFile(tmp_path / "edge.zip").namelist() == ["only/", "only/only_001.txt", "only/only_time.txt"]


def test_a_failed_write_leaves_the_previous_folder_and_no_temporary_files(tmp_path, monkeypatch):
    write_benchmark_files("otb", tmp_path / "otb", tracks(np.random.default_rng(4)))
    before = {p.name: p.read_bytes() for p in (tmp_path / "otb").iterdir()}
    written = []

    def fail_on_second(self, text, *args, **kwargs):
        written.append(self)
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        return Path.write_bytes(self, text.encode())

    monkeypatch.setattr(Path, "write_text", fail_on_second)
    with pytest.raises(OutputError, match="No space left on device; choose another --out"):
        write_benchmark_files("otb", tmp_path / "otb", tracks(np.random.default_rng(5)))
    assert {p.name: p.read_bytes() for p in (tmp_path / "otb").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["otb"]


def test_bad_inputs_say_what_to_give(tmp_path):
    with pytest.raises(InputError, match="without path separators"):
        write_benchmark_files("otb", tmp_path / "x", [result("../up", [[1, 1, 1, 1]])])
    with pytest.raises(InputError, match="2 per-frame times for 1 frames"):
        write_benchmark_files("got10k", tmp_path / "x", [result("a", [[1, 1, 1, 1]])], {"a": np.ones(2)})
    with pytest.raises(InputError, match="unknown benchmark 'vot'"):
        write_benchmark_files("vot", tmp_path / "x", [result("a", [[1, 1, 1, 1]])])
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        write_benchmark_files("otb", tmp_path / "file", [result("a", [[1, 1, 1, 1]])])
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
