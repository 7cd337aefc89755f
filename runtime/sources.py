"""Frame sources for the tracking loop: video files and image folders, and live sources: a camera index
(``camera:N``, V4L2 on Linux), the Jetson CSI camera (``csi:N``, through GStreamer), and RTSP or HTTP streams.

Frames are decoded lazily, one at a time, so streaming a long video costs one frame of memory. A live source
that stops delivering is reopened with a growing delay; a file that ends just ends. Live sources use plain
OpenCV capture calls only (open, isOpened, read, get, release), so anything that answers them can stand in.
"""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import SourceError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})

_DIGITS = re.compile(r"(\d+)")
_CAMERA = re.compile(r"camera:(\d+)")
_CSI = re.compile(r"csi:(\d+)")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


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



@dataclass(frozen=True)
class CsiMode:
    """What the Jetson's Argus camera delivers and what the tracker gets after nvvidconv scales it."""

    width: int = 1280
    height: int = 720
    fps: int = 30
    #: nvvidconv's flip-method: 0 none, 2 rotate 180 (a camera mounted upside down), ...
    flip: int = 0
    out_width: int | None = None
    out_height: int | None = None


def csi_pipeline(sensor: int, mode: CsiMode = CsiMode()) -> str:
    """The GStreamer pipeline of the Jetson CSI camera ``sensor``, in the form NVIDIA documents for OpenCV:
    nvarguscamerasrc in NVMM memory, nvvidconv to BGRx on the CPU side, videoconvert to BGR, then an appsink
    that keeps only the newest buffer, so a slow tracker never reads a stale frame."""
    out_width, out_height = mode.out_width or mode.width, mode.out_height or mode.height
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! "
        f"video/x-raw(memory:NVMM), width=(int){mode.width}, height=(int){mode.height}, "
        f"framerate=(fraction){mode.fps}/1, format=(string)NV12 ! "
        f"nvvidconv flip-method={mode.flip} ! "
        f"video/x-raw, width=(int){out_width}, height=(int){out_height}, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1"
    )


@dataclass(frozen=True)
class Reconnect:
    """How a live source that stops delivering is reopened: ``attempts`` tries, the delay doubling from
    ``first_delay`` up to ``max_delay`` seconds."""

    attempts: int = 6
    first_delay: float = 0.5
    max_delay: float = 8.0

    def delays(self) -> Iterator[float]:
        delay = self.first_delay
        for _ in range(self.attempts):
            yield delay
            delay = min(2 * delay, self.max_delay)


class FrameSource(abc.ABC):
    """Where frames come from: its name, its frame rate, and whether it is live (it will not wait for us)."""

    name: str
    fps: float
    live: bool
    #: times the source was reopened after it stopped delivering (live sources only)
    reconnects: int = 0

    @abc.abstractmethod
    def frames(self) -> Iterator[np.ndarray]:
        """BGR uint8 frames in order until the source ends."""


class ImageFolder(FrameSource):
    live = False

    def __init__(self, path: Path, images: Sequence[Path], fps: float = 30.0):
        self.name, self.images, self.fps = str(path), tuple(images), fps

    def frames(self) -> Iterator[np.ndarray]:
        return read_images(self.images)


class VideoFile(FrameSource):
    live = False

    def __init__(self, path: Path):
        capture = open_video(path)
        self.name, self.path, self.fps = str(path), Path(path), float(capture.get(cv2.CAP_PROP_FPS) or 30.0)
        capture.release()

    def frames(self) -> Iterator[np.ndarray]:
        return read_video(self.path)


class LiveStream(FrameSource):
    """A camera or a network stream. ``open_capture`` makes a fresh ``cv2.VideoCapture``; it is opened once
    here, so a source that never opens fails at once, and again after each drop."""

    live = True

    def __init__(self, name: str, open_capture: Callable[[], cv2.VideoCapture], hint: str, reconnect: Reconnect = Reconnect()):
        self.name, self.reconnect = name, reconnect
        self.reconnects = 0
        self._open_capture = open_capture
        self._capture = open_capture()
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"{name} does not open: {hint}")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 30.0)

    def frames(self) -> Iterator[np.ndarray]:
        capture, self._capture = self._capture, None
        # One backoff schedule per outage: a capture that reopens but still delivers nothing uses up the same
        # attempts, and the next frame that arrives starts a fresh schedule.
        delays = self.reconnect.delays()
        if capture is None:
            capture = self._reopen(delays)
        try:
            while True:
                ok, frame = capture.read()
                if ok:
                    delays = self.reconnect.delays()
                    yield frame
                    continue
                capture.release()
                capture = self._reopen(delays)
        finally:
            capture.release()

    def _reopen(self, delays: Iterator[float]) -> cv2.VideoCapture:
        """A reopened capture, or SourceError once the outage has used every attempt."""
        for delay in delays:
            time.sleep(delay)
            capture = self._open_capture()
            if capture.isOpened():
                self.reconnects += 1
                return capture
            capture.release()
        total = sum(self.reconnect.delays())
        raise SourceError(
            f"{self.name} stopped delivering frames and did not come back in {self.reconnect.attempts} attempts "
            f"over {total:.1f} s; check the camera or the network"
        )


def is_live(spec: str) -> bool:
    """Whether ``spec`` names a live source rather than a path."""
    return bool(_CAMERA.fullmatch(spec) or _CSI.fullmatch(spec)) or spec.lower().startswith(STREAM_SCHEMES)


def open_live(spec: str, reconnect: Reconnect = Reconnect(), csi_mode: CsiMode = CsiMode()) -> LiveStream:
    """``camera:N``, ``csi:N`` or an rtsp/http URL, opened."""
    if camera := _CAMERA.fullmatch(spec):
        index = int(camera.group(1))
        hint = "check that the camera is connected and not in use (ls /dev/video*)"
        return LiveStream(spec, lambda: cv2.VideoCapture(index), hint, reconnect)
    if csi := _CSI.fullmatch(spec):
        pipeline = csi_pipeline(int(csi.group(1)), csi_mode)
        hint = "it needs a Jetson with the CSI camera attached and OpenCV built with GStreamer (JetPack's is)"
        return LiveStream(spec, lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER), hint, reconnect)
    if spec.lower().startswith(STREAM_SCHEMES):
        hint = "check the URL, the network, and that the stream is running"
        return LiveStream(spec, lambda: cv2.VideoCapture(spec, cv2.CAP_FFMPEG), hint, reconnect)
    raise SourceError(f"{spec} is not a live source: use camera:N, csi:N, rtsp://... or http://...")


def open_source(spec: str | Path) -> FrameSource:
    """A live source (``camera:N``, ``csi:N``, a URL), a video file or a folder of images; anything else fails with
    one line."""
    if isinstance(spec, str) and is_live(spec):
        return open_live(spec)
    path = Path(spec)
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise SourceError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return ImageFolder(path, images)
    if not path.exists():
        raise SourceError(f"source {path} does not exist: give a video file, a folder of images, camera:N, csi:N or a URL")
    # FFmpeg opens almost anything (it plays a .txt file as ANSI art), so the suffix decides what a video is.
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SourceError(
            f"{path} is not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) nor a folder of images"
        )
    return VideoFile(path)
