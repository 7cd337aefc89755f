"""What every source of training data gives: frames with one target box and a visibility flag per frame.

Readers return a ``TrainingSet``: the sequences they could use, and one line per thing they skipped (an empty
sequence, a corrupt annotation), so a large dataset with a few bad entries trains instead of crashing, and the
user is told how much was left out.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgetrack.runtime.errors import SourceError


class TrainingSequence(abc.ABC):
    """A sequence of frames. ``boxes`` is ``(N, 4)`` x, y, w, h in pixels; ``visible[i]`` is False where frame
    ``i`` has no usable box (absent, occluded, out of view, unlabeled), and its box row is then NaN."""

    name: str
    boxes: np.ndarray
    visible: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def labelled(self) -> bool:
        """False for unlabeled video, whose targets come from the teacher alone."""
        return bool(self.visible.any())

    @abc.abstractmethod
    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as a BGR uint8 image; ``SourceError`` when it cannot be read."""


def checked_boxes(name: str, boxes, visible=None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes as float64 ``(N, 4)`` and the visibility flags, with rows that are not a positive box made invisible."""
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    usable = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    if visible is not None:
        visible = np.asarray(visible, dtype=bool).reshape(-1)
        if len(visible) != len(boxes):
            raise ValueError(f"{name}: {len(visible)} visibility flags for {len(boxes)} boxes")
        usable &= visible
    boxes[~usable] = np.nan
    return boxes, usable


class ImageSequence(TrainingSequence):
    """Frames stored as image files, one per box."""

    def __init__(self, name: str, frame_paths, boxes, visible=None):
        self.name = name
        self.frame_paths = tuple(Path(p) for p in frame_paths)
        self.boxes, self.visible = checked_boxes(name, boxes, visible)
        if len(self.frame_paths) != len(self.boxes):
            raise ValueError(f"{name}: {len(self.frame_paths)} frames but {len(self.boxes)} boxes")

    def frame(self, index: int) -> np.ndarray:
        path = self.frame_paths[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot read frame {path}")
        return image


@dataclass
class TrainingSet:
    """Usable sequences and a one-line reason for everything skipped while reading."""

    sequences: list[TrainingSequence] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def extend(self, other: TrainingSet) -> TrainingSet:
        self.sequences.extend(other.sequences)
        self.skipped.extend(other.skipped)
        return self
