"""``edgetrack profile``'s measurement: one tracker over one source, timed stage by stage, with memory and CPU.

Two modes:

- ``offline`` runs frames back to back, as fast as the tracker goes;
- ``paced`` releases frames at a fixed rate from a reader thread, like a camera with a one-frame buffer: a frame
  that a newer one has replaced by the time the tracker is free is dropped, and latency is counted from a
  frame's arrival to its result.

The tracker's own fps (frames / time in ``update``) is what ``edgetrack eval`` reports; end-to-end fps also
counts decoding and everything else in the loop.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import load_dataset
from .errors import InputError, SourceError
from .frame_reader import FrameReader, read_timed
from .resources import ResourceSampler, ResourceTrace, open_gpu_reader
from .sources import ImageFolder, is_live, open_live, open_source
from .stopwatch import StageClock
from .tracker import SiameseTracker

MODES = ("offline", "paced")
#: Frames recorded from a camera when --frames is not given: a camera never ends by itself.
CAMERA_FRAMES = 300
#: Template runs per profile: it runs once per target, so its latency is timed on the first frame repeatedly.
TEMPLATE_REPEATS = 20


@dataclass(frozen=True)
class ProfileSettings:
    #: Frames to record after the warm-up; None: to the end of the source (CAMERA_FRAMES for a camera).
    frames: int | None = None
    warmup: int = 10
    mode: str = "offline"
    #: Paced mode's frame rate.
    fps: float = 30.0
    sample_interval: float = 0.02

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise InputError(f"--frames must be at least 1, got {self.frames}")
        if self.warmup < 0:
            raise InputError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if not self.fps > 0:
            raise InputError(f"--fps must be positive, got {self.fps}")


@dataclass(frozen=True)
class ProfileInput:
    """Frames to profile on and where the target starts."""

    name: str
    frames: Callable[[], Iterator[np.ndarray]]
    init: tuple[float, float, float, float] | None
    live: bool
    #: frames in the source when known (not for videos, whose headers may lie, nor for cameras)
    length: int | None = None

    def frames_to_record(self, settings: ProfileSettings) -> int | None:
        """How many frames a profile with ``settings`` will record, where that is known in advance."""
        limit = settings.frames or (CAMERA_FRAMES if self.live else None)
        left = None if self.length is None else max(self.length - 1 - settings.warmup, 0)
        return min(v for v in (limit, left) if v is not None) if (limit, left) != (None, None) else None


def open_profile_input(spec: str, init: tuple[float, float, float, float] | None = None) -> ProfileInput:
    """A live source (``camera:N``, ``csi:N``, a URL), an annotated sequence (its first box is the default
    ``init``), a video or an image folder."""
    if is_live(spec):
        live = open_live(spec)
        if init is None:
            raise InputError(f"{spec} is live and has no ground truth: give the target with --init x,y,w,h")
        return ProfileInput(spec, live.frames, init, live=True)
    path = Path(spec)
    try:
        data = load_dataset(path)
    except SourceError:
        data = None  # not annotated: a plain video or image folder, which open_source judges below
    if data is not None and len(data.sequences) > 1:
        raise InputError(f"{path} holds {len(data.sequences)} sequences; profile one of them, e.g. {path / data.sequences[0].name}")
    if data is not None:
        sequence = data.sequences[0]
        default = tuple(float(v) for v in sequence.groundtruth[0])
        return ProfileInput(sequence.name, sequence.frames, init or default, live=False, length=len(sequence))
    source = open_source(path)
    if init is None:
        raise InputError(f"{path} has no ground truth: give the target with --init x,y,w,h")
    length = len(source.images) if isinstance(source, ImageFolder) else None
    return ProfileInput(path.name, source.frames, init, live=False, length=length)


@dataclass
class ProfileRun:
    """Everything measured, per recorded frame where it applies (seconds)."""

    source: str
    settings: ProfileSettings
    init: tuple[float, float, float, float]
    #: stage -> one duration per tracked frame (decode, preprocess, search, postprocess)
    stages: dict[str, list[float]] = field(default_factory=dict)
    #: template model runs on the first frame
    template: list[float] = field(default_factory=list)
    #: the tracker's update call per tracked frame: preprocess + search + postprocess
    update: list[float] = field(default_factory=list)
    #: per tracked frame, from the start of its decode to its result
    end_to_end: list[float] = field(default_factory=list)
    #: paced mode: per tracked frame, from its arrival to its result
    arrival_latency: list[float] = field(default_factory=list)
    #: when each tracked frame's result came, seconds since recording began
    finished_at: list[float] = field(default_factory=list)
    dropped: int = 0
    lost: int = 0
    wall_seconds: float = 0.0
    trace: ResourceTrace | None = None
    gpu_memory: str | None = None

    @property
    def frames(self) -> int:
        return len(self.update)

    @property
    def tracker_fps(self) -> float:
        return self.frames / sum(self.update)

    @property
    def end_to_end_fps(self) -> float:
        return self.frames / self.wall_seconds


def profile_tracker(
    tracker: SiameseTracker,
    clock: StageClock,
    source: ProfileInput,
    settings: ProfileSettings,
    on_frame: Callable[[], None] | None = None,
) -> ProfileRun:
    """Profile ``tracker``, whose stages are marked on ``clock``, over ``source``.

    The first frame initialises the tracker and is used to time the template; ``settings.warmup`` frames are
    then tracked unrecorded, and the next ``settings.frames`` are recorded.
    """
    if source.live and settings.mode == "paced":
        raise InputError(f"{source.name} is live and paces itself: profile it with --mode offline")
    limit = settings.frames or (CAMERA_FRAMES if source.live else None)
    images = source.frames()
    first = next(images, None)
    if first is None:
        raise SourceError(f"{source.name} has no frames")
    run = ProfileRun(source=source.name, settings=settings, init=tracker.init(first, source.init))
    for _ in range(TEMPLATE_REPEATS):
        start = time.perf_counter()
        tracker.backend.run_template()
        run.template.append(time.perf_counter() - start)
    for _, image in zip(range(settings.warmup), images):
        tracker.update(image)
    offered = itertools.islice(images, limit)

    gpu = open_gpu_reader() if tracker.backend.on_gpu else None
    run.gpu_memory = f"{gpu.source} ({gpu.scope})" if gpu else None
    sampler = ResourceSampler(settings.sample_interval, gpu).start()
    began = time.perf_counter()
    # Paced frames come from a reader thread that keeps only the newest one, as a camera driver does; offline
    # frames are decoded on this thread, as `edgetrack eval` does.
    paced = settings.mode == "paced"
    stream = FrameReader(offered, capacity=1, drop_oldest=True, pace_fps=settings.fps) if paced else read_timed(offered)
    try:
        for frame in stream:
            clock.start()
            result = tracker.update(frame.image)
            done = time.perf_counter()
            laps = clock.seconds
            run.stages.setdefault("decode", []).append(frame.decode_seconds)
            for stage in ("preprocess", "search", "postprocess"):
                run.stages.setdefault(stage, []).append(laps[stage])
            run.update.append(laps["preprocess"] + laps["search"] + laps["postprocess"])
            run.end_to_end.append(frame.decode_seconds + run.update[-1])
            if paced:
                run.arrival_latency.append(done - frame.timestamp)
            run.finished_at.append(done - began)
            run.lost += result.lost
            if on_frame is not None:
                on_frame()
    finally:
        run.wall_seconds = time.perf_counter() - began
        run.trace = sampler.stop()
        if paced:
            stream.close()
            run.dropped = stream.dropped
    if not run.update:
        raise SourceError(
            f"{source.name} has no frames left to record after the first and {settings.warmup} warm-up frames; lower --warmup"
        )
    return run
