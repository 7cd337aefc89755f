"""Dataset readers: OTB and VOT sequence folders, a video file with its ground truth, a parent folder of sequences;
``load_dataset`` also reads the GOT-10k, LaSOT, TrackingNet and UAV123 layouts of ``layouts``.

Every reader gives ``Sequence`` objects with x,y,w,h ground truth; frames are read only when iterated.
OTB boxes are used as they are; a VOT polygon becomes the box of its min/max corners.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from collections.abc import Sequence as PathSequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgetrack.defaults import DATASET_LAYOUT

from .errors import SourceError
from .geometry import polygon_to_xywh
from .metrics import absent_frames
from .sources import VIDEO_SUFFIXES, list_images, natural_key, open_video, read_images

#: Ground-truth file names of a sequence folder, in the order they are looked for.
GROUNDTRUTH_NAMES = ("groundtruth_rect.txt", "groundtruth.txt")
#: Sub-folders that hold a sequence's frames (OTB ``img/``, VOT ``color/``); otherwise the folder itself.
FRAME_DIRS = ("img", "color")
_SEPARATORS = re.compile(r"[,\s]+")


# eq=False: comparing ground-truth arrays field by field has no single truth value.
@dataclass(frozen=True, eq=False)
class Sequence:
    """One annotated sequence whose frames come from either image files or a video file.

    ``absent`` flags the frames whose target is not visible. A dataset's own labels (GOT-10k ``absence.label``,
    LaSOT ``out_of_view.txt``) may be given; the frames whose ground truth holds no box (``metrics.absent_frames``)
    are always added, so after construction ``absent`` is a read-only bool array with one flag per frame.

    ``frame_paths`` is kept as given when it is a lazy sequence of paths (``layouts.NumberedFrames``), else made a
    tuple. ``scored`` is False when only the first frame's box is known (GOT-10k and TrackingNet test sequences): the
    later rows are NaN, so the sequence can be tracked and its result file written, but it has nothing to be scored
    against, and its ``absent`` flags (every frame after the first) say nothing about the target.
    """

    name: str
    groundtruth: np.ndarray
    frame_paths: PathSequence[Path] = ()
    video: Path | None = None
    absent: np.ndarray | None = None
    scored: bool = True

    def __post_init__(self) -> None:
        gt = np.array(self.groundtruth, dtype=np.float64)
        if gt.ndim != 2 or gt.shape[1] != 4:
            raise ValueError(f"sequence {self.name}: ground truth must be N x 4 (x,y,w,h), got shape {gt.shape}")
        gt.setflags(write=False)
        object.__setattr__(self, "groundtruth", gt)
        absent = absent_frames(gt)
        if self.absent is not None:
            given = np.asarray(self.absent, dtype=bool).reshape(-1)
            if len(given) != len(gt):
                raise ValueError(f"sequence {self.name}: {len(given)} absence flags for {len(gt)} ground-truth rows")
            absent |= given
        absent.setflags(write=False)
        object.__setattr__(self, "absent", absent)
        if isinstance(self.frame_paths, (list, tuple)) or not isinstance(self.frame_paths, PathSequence):
            object.__setattr__(self, "frame_paths", tuple(Path(p) for p in self.frame_paths))
        if self.video is not None:
            object.__setattr__(self, "video", Path(self.video))
        if (self.video is None) == (not self.frame_paths):
            raise ValueError(f"sequence {self.name}: give either frame_paths or video, not both or neither")
        if self.video is None and len(self.frame_paths) != len(gt):
            raise ValueError(f"sequence {self.name}: {len(self.frame_paths)} frames but {len(gt)} ground-truth rows")

    def __len__(self) -> int:
        return len(self.groundtruth)

    def frames(self) -> Iterator[np.ndarray]:
        """Yield the frames in order as BGR uint8 images."""
        if self.video is None:
            yield from read_images(self.frame_paths)
        else:
            yield from self._video_frames()

    def _video_frames(self) -> Iterator[np.ndarray]:
        capture = open_video(self.video)
        try:
            for index in range(len(self)):
                ok, frame = capture.read()
                if not ok:
                    raise SourceError(
                        f"video {self.video} gave no frame at index {index} but its ground truth has {len(self)} rows; "
                        "check that the video is complete and the ground truth belongs to it"
                    )
                yield frame
            if capture.grab():
                raise SourceError(
                    f"video {self.video} has more frames than its {len(self)} ground-truth rows; "
                    "check that the ground truth belongs to this video"
                )
        finally:
            capture.release()


@dataclass(frozen=True)
class Dataset:
    """The sequences found at a path, the sub-folders skipped as not being sequences with the reason, and the
    layout they were read in (one of ``layouts.LAYOUTS`` but ``auto``): the benchmark whose official metrics apply."""

    sequences: list[Sequence]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    layout: str = "otb"


def load_dataset(path: Path, groundtruth: Path | None = None, layout: str = DATASET_LAYOUT) -> Dataset:
    """Read a dataset in ``layout``, one of ``layouts.LAYOUTS``: ``otb`` (a sequence folder, a video file or a parent
    folder of sequences), ``got10k``, ``lasot``, ``trackingnet``, ``uav123``, or ``auto`` to detect it from the
    folder's content.

    ``groundtruth`` names the ground-truth file of a single video or frame folder; without it the file is found
    beside the video or inside the folder.
    """
    from .layouts import load_layout  # layouts builds this module's Sequences, so it is imported when called

    return load_layout(path, groundtruth, layout)


def load_otb(path: Path, groundtruth: Path | None = None, looked_for: str = "") -> Dataset:
    """Read an OTB or VOT sequence folder, a video file or a parent folder of sequences. ``looked_for`` ends the
    error for a folder that is none of them with what else was looked for."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path} does not exist; give a sequence folder, a folder of sequences or a video file")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise SourceError(
                f"{path} is not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}); "
                "give a video, a sequence folder or a folder of sequences"
            )
        return Dataset([load_video_sequence(path, groundtruth)])
    if groundtruth is not None:
        frames = _frame_paths(path)
        if not frames:
            raise SourceError(f"{path} holds no images (in img/, color/ or the folder itself) for {groundtruth}")
        return Dataset([_folder_sequence(path.name, frames, groundtruth)])

    frames, gt, reason = _scan(path)
    if reason is None:
        return Dataset([_folder_sequence(path.name, frames, gt)])
    sequences, skipped = [], []
    for child in sorted((c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")), key=natural_key):
        child_frames, child_gt, child_reason = _scan(child)
        if child_reason is None:
            sequences.append(_folder_sequence(child.name, child_frames, child_gt))
        else:
            skipped.append((child.name, child_reason))
    if not sequences:
        raise SourceError(
            f"{path} is not a dataset: {reason}, and no sub-folder is a sequence "
            f"(frames in img/, color/ or the folder itself, plus {' or '.join(GROUNDTRUTH_NAMES)})"
            + (f"; {looked_for}" if looked_for else "")
        )
    return Dataset(sequences, skipped)


def load_video_sequence(video: Path, groundtruth: Path | None = None) -> Sequence:
    """A video file with its ground truth: the file given, else ``<stem>.txt``, ``groundtruth_rect.txt`` or
    ``groundtruth.txt`` beside the video."""
    video = Path(video)
    if not video.is_file():
        raise SourceError(f"video {video} does not exist")
    if groundtruth is None:
        candidates = [video.with_suffix(".txt")] + [video.parent / name for name in GROUNDTRUTH_NAMES]
        groundtruth = next((c for c in candidates if c.is_file()), None)
        if groundtruth is None:
            raise SourceError(
                f"no ground truth for video {video}: give a ground-truth file or put {video.stem}.txt "
                f"or {' or '.join(GROUNDTRUTH_NAMES)} beside it"
            )
    boxes = read_groundtruth(groundtruth)
    capture = open_video(video)
    try:
        hint = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        # Containers may report a wrong count, so a disagreeing hint is confirmed by counting before failing
        # early; the exact count is checked again when the frames are read.
        if hint > 0 and hint != len(boxes):
            count = 0
            while capture.grab():
                count += 1
            if count != len(boxes):
                raise SourceError(
                    f"video {video} has {count} frames but ground truth {groundtruth} has {len(boxes)} rows; "
                    "give the ground truth of this video"
                )
    finally:
        capture.release()
    return Sequence(video.stem, boxes, video=video)


def read_groundtruth(path: Path) -> np.ndarray:
    """Read a ground-truth file as (N, 4) x,y,w,h boxes.

    Rows hold 4 values (x,y,w,h) or 8 (a polygon x1,y1,...,x4,y4), separated by commas, tabs or spaces.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig", errors="replace").rstrip().splitlines()
    except OSError as exc:
        raise SourceError(f"cannot read ground truth {path}: {exc.strerror or exc}") from None
    boxes = np.empty((len(lines), 4), dtype=np.float64)
    for row, line in enumerate(lines):
        try:
            values = [float(v) for v in _SEPARATORS.split(line.strip())]
        except ValueError:
            values = []
        if len(values) == 4:
            boxes[row] = values
        elif len(values) == 8:
            boxes[row] = polygon_to_xywh(values)
        else:
            raise SourceError(
                f"{path} line {row + 1}: expected 4 numbers (x,y,w,h) or 8 (polygon), got {line.strip()[:60]!r}"
            )
    if not len(boxes):
        raise SourceError(f"ground truth {path} is empty")
    return boxes


def _frame_paths(folder: Path) -> list[Path]:
    for name in FRAME_DIRS:
        if (folder / name).is_dir():
            folder = folder / name
            break
    return list_images(folder)


def _scan(folder: Path) -> tuple[list[Path], Path | None, str | None]:
    """The frames and ground-truth file of ``folder``, and why it is not a sequence (None when it is one)."""
    frames = _frame_paths(folder)
    gt = next((folder / n for n in GROUNDTRUTH_NAMES if (folder / n).is_file()), None)
    if frames and gt is not None:
        return frames, gt, None
    if frames:
        return frames, gt, f"no ground-truth file ({' or '.join(GROUNDTRUTH_NAMES)}) beside its frames"
    if gt is not None:
        return frames, gt, f"no frames (img/, color/ or images in the folder) beside {gt.name}"
    return frames, gt, "no frames and no ground truth"


def _folder_sequence(name: str, frames: list[Path], groundtruth: Path) -> Sequence:
    boxes = read_groundtruth(groundtruth)
    if len(boxes) != len(frames):
        raise SourceError(
            f"sequence {name}: ground truth {groundtruth} has {len(boxes)} rows but there are {len(frames)} frames "
            f"in {frames[0].parent}; give one row per frame"
        )
    return Sequence(name, boxes, frame_paths=tuple(frames))
