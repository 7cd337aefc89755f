"""No traceback reaches the user: every command's error paths end in one ``error:`` line and a non-zero exit code,
on a full disk and a read-only folder too; ``EDGETRACK_DEBUG=1`` shows the whole chain behind the line."""

from __future__ import annotations

import errno
import os
import pickle
import subprocess

import pytest

from test_cli import edgetrack

torch = pytest.importorskip("torch")


class Payload:
    """A pickle that would create a file when unpickled: loading it must never run it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _mount(folder, options: str) -> None:
    folder.mkdir()
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({run.stderr.strip() or 'not root'}): the full-disk and read-only cases need one")


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB file system that is already full."""
    folder = tmp_path / "full"
    _mount(folder, "size=256k")
    try:
        with open(folder / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "ro"
    _mount(folder, "ro,size=64k")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def files(tmp_path, data):
    """Bad inputs, made once per test."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.pth").write_bytes(b"")
    (bad / "garbage.pth").write_bytes(b"\x80\x04this is not a checkpoint at all")
    (bad / "evil.pth").write_bytes(pickle.dumps(Payload(bad / "pwned")))
    (bad / "many.yaml").write_text("epochs: many\n")
    (bad / "thesis").mkdir()
    (bad / "thesis" / "thesis.tex").write_text("\\documentclass{article}")
    return bad


def cases(bundle, data, bad, full, ro):
    v2 = data / "models" / "nanotrack" / "v2"
    pair = (v2 / "nanotrack_backbone_sim.onnx", v2 / "nanotrack_head_sim.onnx")
    video, dat = data / "videos" / "bag.avi", data / "sequences" / "dat"
    track = ("track", bundle, "--source", video, "--init", "292,112,106,144", "--no-show")
    return {
        "models: unknown option": ("models", "--bogus"),
        "train: epochs many": ("train", "--model", "nanotrack-v1-s50", "--config", bad / "many.yaml", "--out", bad / "run"),
        "train: lr nan": ("train", "--model", "nanotrack-v1-s50", "--lr", "nan", "--out", bad / "run"),
        "distill: garbage teacher": ("distill", "--teacher", f"nanotrack-v1:{bad / 'garbage.pth'}", "--students", "nanotrack-v1-s50", "--out", bad / "run"),
        "distill: empty teacher": ("distill", "--teacher", f"nanotrack-v1:{bad / 'empty.pth'}", "--students", "nanotrack-v1-s50", "--out", bad / "run"),
        "search-student: missing teacher": ("search-student", "--teacher", f"nanotrack-v1:{bad / 'none.pth'}", "--out", bad / "search"),
        "export: malicious weights": ("export", "--model", "nanotrack-v1", "--weights", bad / "evil.pth", "-o", bad / "x.etb"),
        "export: force over a user folder": ("export", "--model", "nanotrack-v1", "-o", bad / "thesis", "--force"),
        "import-nanotrack: wrong version": ("import-nanotrack", *pair, "--version", "v1", "-o", bad / "v1.etb"),
        "import-nanotrack: full disk": ("import-nanotrack", *pair, "-o", full / "v2.etb"),
        "import-nanotrack: read-only": ("import-nanotrack", *pair, "-o", ro / "v2.etb"),
        "build-engine: max-auc-drop nan": ("build-engine", bundle, "--precision", "fp16", "--eval", dat, "--max-auc-drop", "nan"),
        "build-engine: not a bundle": ("build-engine", bad, "--precision", "fp16"),
        "eval: read-only out": ("eval", bundle, "--dataset", dat, "--out", ro / "eval"),
        "eval: full disk": ("eval", bundle, "--dataset", dat, "--out", full / "eval"),
        "track: unknown suffix": (*track, "--save", bad / "out.xyz"),
        "track: results is a folder": (*track, "--results", bad),
        "track: full disk": (*track, "--results", full / "r.txt"),
        "track: read-only": (*track, "--save", ro / "out.mp4"),
        "profile: full disk": ("profile", bundle, "--source", dat, "--report", full / "report"),
        "profile: over a user folder": ("profile", bundle, "--source", dat, "--report", bad / "thesis"),
        "bench: max-auc-drop nan": ("bench", bundle, "--dataset", dat, "--max-auc-drop", "nan", "--out", bad / "bench"),
        "demo: over a user folder": ("demo", "--out", bad / "thesis"),
    }


def test_every_error_path_is_one_line_without_a_traceback(nanotrack_bundles, data, files, full_disk, read_only):
    for name, args in cases(nanotrack_bundles["v2"].path, data, files, full_disk, read_only).items():
        run = edgetrack(*args)
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode != 0, (name, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr, (name, run.stderr)
        assert lines and lines[-1].lower().startswith("error: "), (name, run.stderr)
        assert not (files / "pwned").exists(), "the malicious checkpoint ran its payload"
    assert (files / "thesis" / "thesis.tex").is_file()
    assert sorted(p.name for p in files.iterdir()) == ["empty.pth", "evil.pth", "garbage.pth", "many.yaml", "thesis"]


def test_debug_shows_the_whole_chain(files):
    args = ("distill", "--teacher", f"nanotrack-v1:{files / 'evil.pth'}", "--students", "nanotrack-v1-s50", "--out", files / "run")
    quiet = edgetrack(*args)
    loud = edgetrack(*args, env={**os.environ, "EDGETRACK_DEBUG": "1"})
    assert "Traceback" not in quiet.stderr and quiet.returncode == loud.returncode != 0
    assert "Traceback" in loud.stderr and "UnpicklingError" in loud.stderr, loud.stderr
    assert loud.stderr.splitlines()[-1] == quiet.stderr.splitlines()[-1]
    flagged = edgetrack("--debug", *args)
    assert flagged.returncode == loud.returncode and "UnpicklingError" in flagged.stderr
