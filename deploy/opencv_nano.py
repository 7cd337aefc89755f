"""OpenCV's ``cv2.TrackerNano`` as a reference tracker: the published NanoTrack pair it needs, and an adapter that
lets the runtime's evaluation drive it exactly as it drives ``SiameseTracker``.

TrackerNano runs the published backbone + head ONNX files, not a bundle's models. Whether it can run a given pair
is only known by running it: it takes v1 and v2, and fails on v3's first update (its score map is fixed at 16x16).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from edgetrack.runtime.bundle import Bundle
from edgetrack.runtime.errors import EdgetrackError
from edgetrack.runtime.families.nanotrack import NANOTRACK
from edgetrack.runtime.tracker import TrackResult

#: The name ``edgetrack bench --compare`` knows this reference by.
OPENCV_NANO = "opencv-nano"


class TrackerNanoUnavailable(EdgetrackError):
    """cv2.TrackerNano cannot run here, or not on this pair; the message says why."""


class OpenCVNanoTracker:
    """``cv2.TrackerNano`` behind the ``init``/``update`` interface that ``track_sequence`` drives, so the reference
    row is timed and scored exactly as the bench's own cells are."""

    def __init__(self, backbone: Path, head: Path):
        self.params = cv2.TrackerNano_Params()
        self.params.backbone = str(backbone)
        self.params.neckhead = str(head)

    def init(self, frame, box) -> None:
        # A fresh tracker per sequence, as OpenCV's own samples do; TrackerNano takes an integer cv::Rect.
        self.tracker = cv2.TrackerNano_create(self.params)
        self.tracker.init(frame, tuple(int(round(v)) for v in box))

    def update(self, frame) -> TrackResult:
        found, box = self.tracker.update(frame)
        return TrackResult(tuple(float(v) for v in box), float(self.tracker.getTrackingScore()), not found)


def data_root() -> Path:
    return Path(os.environ.get("EDGETRACK_DATA", "../shared/data"))


def published_pair(bundle: Bundle) -> tuple[Path, Path]:
    """The published NanoTrack files an imported bundle was made from, under ``$EDGETRACK_DATA/models/nanotrack/*/``.

    import-nanotrack records only the file names, and v1 and v2 share theirs, so the folder named after the
    bundle's version (``nanotrack-v2`` -> ``v2/``) wins when several hold them.
    """
    if bundle.meta.spec != NANOTRACK:
        raise TrackerNanoUnavailable(f"cv2.TrackerNano runs NanoTrack models; {bundle.meta.name} is a {bundle.meta.family} bundle")
    source = bundle.meta.producer.get("source")
    if not (isinstance(source, list) and len(source) == 2):
        raise TrackerNanoUnavailable(
            f"{bundle.meta.name} records no published backbone/head pair (only import-nanotrack bundles do); "
            f"give --compare {OPENCV_NANO}=BACKBONE.onnx,HEAD.onnx"
        )
    root = data_root() / "models" / "nanotrack"
    folders = sorted(f for f in root.glob("*") if all((f / name).is_file() for name in source))
    if not folders:
        raise TrackerNanoUnavailable(
            f"found no {' + '.join(source)} under {root}/*/ (set EDGETRACK_DATA, or give --compare {OPENCV_NANO}=BACKBONE.onnx,HEAD.onnx)"
        )
    version = bundle.meta.name.rpartition("-")[2]
    folder = next((f for f in folders if f.name == version), None)
    if folder is None and len(folders) > 1:
        raise TrackerNanoUnavailable(
            f"{' + '.join(source)} are in {', '.join(map(str, folders))} and none is named {version!r}; "
            f"give --compare {OPENCV_NANO}=BACKBONE.onnx,HEAD.onnx"
        )
    folder = folder or folders[0]
    return folder / source[0], folder / source[1]


def check_pair(backbone: Path, head: Path) -> tuple[Path, Path]:
    """The pair, once this OpenCV has TrackerNano and both files exist."""
    if not hasattr(cv2, "TrackerNano_create"):
        raise TrackerNanoUnavailable(f"this OpenCV ({cv2.__version__}) has no TrackerNano: it needs OpenCV >= 4.7 with the dnn module")
    missing = [str(p) for p in (backbone, head) if not Path(p).is_file()]
    if missing:
        raise TrackerNanoUnavailable(f"{' and '.join(missing)} not found")
    return Path(backbone), Path(head)
