"""`edgetrack.open_tracker`: a path or a shipped name in, a tracker that owns and closes its backend out; and no
command leaves a backend open."""

from __future__ import annotations

import cv2
import pytest
from click.testing import CliRunner

import edgetrack
from edgetrack.cli import main
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.datasets import read_groundtruth
from edgetrack.runtime.errors import BundleError


def closed(backend: OnnxRuntimeBackend) -> bool:
    return backend._search is None and backend._template is None


def test_open_tracker_takes_a_shipped_name_and_closes_its_backend(data):
    folder = data / "sequences" / "Crossing"
    frames = sorted((folder / "img").iterdir())[:3]
    box = read_groundtruth(folder / "groundtruth_rect.txt")[0]
    with edgetrack.open_tracker("edgetrack-nano-s") as tracker:
        assert tracker.bundle.meta.name == "edgetrack-nano-s" and not closed(tracker.backend)
        tracker.init(cv2.imread(str(frames[0])), box)
        result = tracker.update(cv2.imread(str(frames[1])))
        assert result.box[2] > 0
    assert closed(tracker.backend)
    tracker.close()  # twice is safe


def test_open_tracker_names_the_shipped_students_for_an_unknown_name():
    with pytest.raises(BundleError, match="shipped: .*edgetrack-nano-m"):
        edgetrack.open_tracker("no-such-student")


def test_every_command_closes_the_backends_it_opens(data, tmp_path, monkeypatch):
    opened: list[OnnxRuntimeBackend] = []
    original = OnnxRuntimeBackend.__init__

    def counting_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(OnnxRuntimeBackend, "__init__", counting_init)
    bag = data / "sequences" / "bag"
    runs = {
        "eval": ["eval", "edgetrack-nano-s", "--dataset", str(bag), "--out", str(tmp_path / "eval")],
        "track": ["track", "edgetrack-nano-s", "--source", str(data / "videos" / "bag.avi"), "--init", "292,112,106,144", "--no-show", "--results", str(tmp_path / "bag.txt")],
        "profile": ["profile", "edgetrack-nano-s", "--source", str(bag), "--frames", "20", "--report", str(tmp_path / "profile")],
    }
    for verb, args in runs.items():
        before = len(opened)
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, (verb, result.output)
        assert len(opened) == before + 1, verb
        assert closed(opened[-1]), f"{verb} left its ONNX Runtime sessions open"
