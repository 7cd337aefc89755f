"""Unlabeled video as training data: frames without boxes, whose targets the teacher gives during training.

A video is decoded once and its frames are kept JPEG-encoded in memory: random access for the pair sampler at
a fraction of the memory of raw frames (a 600-frame 480p clip is about 20 MB instead of 500 MB), and without
seeking, which is slow and inexact in most codecs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgetrack.runtime.errors import SourceError
from edgetrack.runtime.sources import VIDEO_SUFFIXES, list_images, read_video

from .sequence import ImageSequence, TrainingSequence, TrainingSet

JPEG_QUALITY = 92


class EncodedVideo(TrainingSequence):
    def __init__(self, name: str, encoded: list[np.ndarray]):
        self.name = name
        self._encoded = encoded
        self.boxes = np.full((len(encoded), 4), np.nan)
        self.visible = np.zeros(len(encoded), bool)

    def frame(self, index: int) -> np.ndarray:
        return cv2.imdecode(self._encoded[index], cv2.IMREAD_COLOR)


def read_unlabeled(path: Path, every: int = 1) -> TrainingSet:
    """A video file or a folder of images as one unlabeled sequence, keeping every ``every``-th frame."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"unlabeled data {path} not found: give a video file or a folder of images")
    if path.is_dir():
        frames = list_images(path)[::every]
        if len(frames) < 2:
            return TrainingSet(skipped=[f"{path}: fewer than 2 images, nothing to pair"])
        return TrainingSet([ImageSequence(path.name, frames, np.full((len(frames), 4), np.nan))])
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SourceError(f"unlabeled data {path} is neither a folder of images nor a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    encoded = []
    for index, frame in enumerate(read_video(path)):
        if index % every == 0:
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                encoded.append(data)
    if len(encoded) < 2:
        return TrainingSet(skipped=[f"{path}: fewer than 2 decodable frames, nothing to pair"])
    return TrainingSet([EncodedVideo(path.stem, encoded)])
