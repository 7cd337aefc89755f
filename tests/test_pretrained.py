"""Shipped students by name: a name resolves to the bundle under runtime/pretrained/, an unknown one is one line
listing the shipped names, and commands that add to a bundle work on a copy in a user folder."""

from __future__ import annotations

import shutil

import pytest

from edgetrack.runtime.bundle import load_bundle
from edgetrack.runtime.errors import BundleError, OutputError
from edgetrack.runtime.pretrained import resolve, shipped, writable_copy


@pytest.fixture
def folder(nanotrack_bundles, tmp_path):
    shelf = tmp_path / "pretrained"
    shelf.mkdir()
    shutil.copytree(nanotrack_bundles["v2"].path, shelf / "edgetrack-test.etb")
    return shelf


def test_names_resolve_to_shipped_bundles(folder, nanotrack_bundles):
    assert shipped(folder) == {"edgetrack-test": folder / "edgetrack-test.etb"}
    assert resolve("edgetrack-test", folder) == folder / "edgetrack-test.etb"
    assert resolve(nanotrack_bundles["v1"].path, folder) == nanotrack_bundles["v1"].path


def test_an_unknown_name_lists_the_shipped_ones(folder):
    with pytest.raises(BundleError, match=r"^edgetrack-nano-x is neither a bundle folder nor a shipped student \(shipped: edgetrack-test\)$"):
        resolve("edgetrack-nano-x", folder)


def test_builds_go_to_a_copy_never_into_the_shipped_bundle(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copy = writable_copy("edgetrack-test", folder=folder)
    assert copy == tmp_path.joinpath("edgetrack-test.etb").relative_to(tmp_path) and load_bundle(copy).meta.name == "nanotrack-v2"
    (copy / "marker").write_text("a build happened here")
    assert writable_copy("edgetrack-test", folder=folder) == copy and (copy / "marker").exists()
    assert not (folder / "edgetrack-test.etb" / "marker").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(OutputError, match="exists and is not a bundle"):
        writable_copy("edgetrack-test", mine, folder=folder)
    assert writable_copy(copy, folder=folder) == copy


def test_commands_name_the_shipped_students_in_their_errors(data, tmp_path):
    from test_cli import edgetrack, one_error_line

    line = one_error_line(edgetrack("eval", "edgetrack-nano-x", "--dataset", data / "sequences" / "dat", "--out", tmp_path / "e"))
    assert "edgetrack-nano-x is neither a bundle folder nor a shipped student (shipped:" in line
    assert not (tmp_path / "e").exists()
