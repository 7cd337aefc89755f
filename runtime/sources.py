"""Frame sources for the tracking loop: video files, image folders and cameras (``camera:N``).

Frames are decoded lazily, one at a time, so streaming a long video costs one frame of memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import SourceError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})

_DIGITS = re.compile(r"(\d+)")
_CAMERA = re.compile(r"camera:(\d+)")


def natural_key(path: Path) -> list:
    """Sort key that puts frame 10 after frame 9 even when names are not zero-padded."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(path.name)]


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` in natural name order."""
    return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=natural_key)


def read_images(paths: Sequence[Path]) -> Iterator[np.ndarray]:
    """Decode ``paths`` one at a time as BGR uint8 frames."""
    for index, path in enumerate(paths):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"cannot read frame index {index}: {path} is missing, corrupt or not an image")
        yield frame


def open_video(path: Path) -> cv2.VideoCapture:
    """An opened capture positioned on the first frame, or one line that says why there is none."""
    if not Path(path).is_file():
        raise SourceError(f"video {path} does not exist")
    capture = cv2.VideoCapture(str(path))
    # Some containers open but hold nothing decodable: only reading a frame tells.
    ok, _ = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise SourceError(
            f"cannot read video {path}: the file is corrupt or its codec is not supported by OpenCV; "
            "convert it (e.g. ffmpeg -i IN -c:v mjpeg OUT.avi) or extract its frames"
        )
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return capture


def read_video(path: Path) -> Iterator[np.ndarray]:
    capture = open_video(path)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def open_camera(index: int) -> cv2.VideoCapture:
    """An opened camera (V4L2 on Linux), or one line that says why there is none."""
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"camera {index} does not open: check that it is connected and not in use (ls /dev/video*)")
    return capture


def read_camera(index: int) -> Iterator[np.ndarray]:
    """Frames as the camera delivers them, until it stops delivering."""
    capture = open_camera(index)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


@dataclass(frozen=True)
class FrameSource:
    """A video file, an image folder or a camera, with what a recorder of it needs to know."""

    path: Path
    fps: float
    images: tuple[Path, ...] = ()
    camera: int | None = None

    def frames(self) -> Iterator[np.ndarray]:
        if self.camera is not None:
            return read_camera(self.camera)
        return read_images(self.images) if self.images else read_video(self.path)


def open_source(path: str | Path) -> FrameSource:
    """``camera:N``, a video file or a folder of images; anything else fails with one line."""
    camera = _CAMERA.fullmatch(path) if isinstance(path, str) else None
    if camera:
        capture = open_camera(int(camera.group(1)))
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        capture.release()
        return FrameSource(path=Path(path), fps=float(fps), camera=int(camera.group(1)))
    path = Path(path)
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise SourceError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return FrameSource(path=path, fps=30.0, images=tuple(images))
    if not path.exists():
        raise SourceError(f"source {path} does not exist: give a video file or a folder of images")
    # FFmpeg opens almost anything (it plays a .txt file as ANSI art), so the suffix decides what a video is.
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SourceError(
            f"{path} is not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) nor a folder of images"
        )
    capture = open_video(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    capture.release()
    return FrameSource(path=path, fps=float(fps))
