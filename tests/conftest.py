"""Shared fixtures: the real data folder and NanoTrack bundles imported from the real ONNX pairs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGETRACK_DATA", REPO / ".." / "shared" / "data")).resolve()

NANOTRACK_FILES = {
    "v1": ("nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"),
    "v2": ("nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"),
    "v3": ("nanotrack_backbone.onnx", "nanotrack_head.onnx"),
}


def cut_sequence(source: Path, frames: str, groundtruth: str, count: int, folder: Path) -> Path:
    """The first ``count`` frames of a real sequence (its ``frames`` sub-folder and ``groundtruth`` file), copied to
    ``folder`` in the same layout."""
    import shutil

    (folder / frames).mkdir(parents=True)
    for image in sorted((source / frames).glob("*.jpg"))[:count]:
        shutil.copy(image, folder / frames / image.name)
    lines = (source / groundtruth).read_text().splitlines()[:count]
    (folder / groundtruth).write_text("\n".join(lines) + "\n")
    return folder


def blank_sequence(groundtruth, folder: Path):
    """A sequence named ``scripted`` of blank 8x8 frames written to ``folder``, one per row of ``groundtruth``: for
    stand-in trackers whose answers do not depend on the pixels."""
    import cv2
    import numpy as np

    from edgetrack.runtime.datasets import Sequence

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:04d}.png" for i in range(len(groundtruth))]
    for path in paths:
        cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    return Sequence("scripted", np.array(groundtruth, float), frame_paths=paths)


def nanotrack_pair(version: str) -> tuple[Path, Path]:
    folder = DATA / "models" / "nanotrack" / version
    backbone, head = NANOTRACK_FILES[version]
    return folder / backbone, folder / head


@pytest.fixture(scope="session")
def data() -> Path:
    # Real-data tests must run in CI, not skip: a missing folder is a failure with a clear reason.
    assert (DATA / "sequences").is_dir(), f"shared data missing at {DATA}; set EDGETRACK_DATA"
    return DATA


@pytest.fixture(scope="session")
def nanotrack_bundles(tmp_path_factory, data) -> dict:
    """NanoTrack v1, v2 and v3 bundles, imported once per test session."""
    from edgetrack.deploy.import_nanotrack import import_nanotrack

    root = tmp_path_factory.mktemp("bundles")
    return {v: import_nanotrack(*nanotrack_pair(v), root / f"nanotrack-{v}.etb", version=v) for v in NANOTRACK_FILES}


@pytest.fixture
def bundle_copy(nanotrack_bundles, tmp_path):
    """A copy of the NanoTrack v2 bundle that a test may damage."""
    import shutil

    path = tmp_path / "copy.etb"
    shutil.copytree(nanotrack_bundles["v2"].path, path)
    return path
