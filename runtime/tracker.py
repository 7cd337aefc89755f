"""The Siamese tracking loop, ``init(frame, box)`` then ``update(frame)``, driven only by bundle metadata.

One loop serves every family: it cuts the search crops the family's step asks for, runs the search model and
lets the family ``locate`` the target in its outputs (``runtime.families``). nanotrack (points + ltrb) and siamrpn
(anchors + deltas) score proposals with the pysot scale/ratio penalty and cosine window; siamfc searches a scale
pyramid of upsampled score maps. Whether the target is lost is told by ``runtime.lost_signal``; in long-term mode
a lost target is searched for over the whole frame (``runtime.long_term``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import geometry as geo
from .backends.base import InferenceBackend
from .bundle import Bundle, BundleMeta
from .crops import TargetState, search_crop, template_crop
from .errors import InputError
from .families.base import Candidate
from .long_term import TileScan
from .lost_signal import DEFAULT_SETTINGS, LostDetector, LostSignalSettings
from .stopwatch import StageClock, ignore_lap


@dataclass(frozen=True)
class TrackResult:
    """One frame's answer: the box ``x, y, w, h``; ``score``, the confidence that the box holds the target
    (``runtime.lost_signal``: 1 while the target stands out at least 3/4 as much as on the first tracked frame,
    towards 0 as it fades), which is what ``hyper.lost_threshold`` is compared with; whether the target is
    ``lost``; and ``raw_score``, the model's own score of the chosen location (NaN where a tracker has none).

    ``lost`` is exactly ``score < hyper.lost_threshold``, in long-term mode too (``SiameseTracker``).
    """

    box: tuple[float, float, float, float]
    score: float
    lost: bool
    raw_score: float = float("nan")


class InputWriter:
    """Turns a uint8 HWC BGR crop into the network's NCHW float32 input, in place.

    The crop is split into its three contiguous uint8 planes first (``cv2.split`` into buffers the writer owns,
    one set per crop size), and each plane is converted to float32 on its own: three times faster than one strided
    copy of the transposed crop, which took a third of an update's time outside the network."""

    def __init__(self, meta: BundleMeta):
        layout = meta.input
        # the BGR planes in the network's channel order
        self._order = (2, 1, 0) if layout.color == "RGB" else (0, 1, 2)
        self._identity = layout.is_identity
        self._scale = np.float32(layout.scale)
        self._mean = np.asarray(layout.mean, np.float32).reshape(3, 1, 1)
        self._std = np.asarray(layout.std, np.float32).reshape(3, 1, 1)
        self._planes: dict[tuple[int, int], list[np.ndarray]] = {}

    def write(self, crop: np.ndarray, dst: np.ndarray) -> None:
        size = crop.shape[:2]
        planes = self._planes.get(size)
        if planes is None:
            planes = self._planes[size] = [np.empty(size, np.uint8) for _ in range(3)]
        # OpenCV writes into the given planes and returns them; using what it returns stays right on a build that
        # would allocate new ones instead
        planes = cv2.split(np.ascontiguousarray(crop), planes)
        for channel, plane in zip(dst, self._order):
            np.copyto(channel, planes[plane])
        if not self._identity:
            np.multiply(dst, self._scale, out=dst)
            np.subtract(dst, self._mean, out=dst)
            np.divide(dst, self._std, out=dst)


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """The defined behaviour for odd frames: grey is replicated to three channels, alpha is dropped."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        kind = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"frames must be uint8 images (H x W x 3 BGR), got {kind}")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise InputError(f"frames must be H x W x 3 BGR, H x W grey or H x W x 4 BGRA, got shape {frame.shape}")


def check_init_box(box, height: int, width: int) -> tuple[float, float, float, float]:
    """An initial box must have a positive size and overlap the frame."""
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"the initial box must be four numbers x,y,w,h, got {box!r}") from None
    if not all(np.isfinite([x, y, w, h])) or w <= 0 or h <= 0:
        raise InputError(f"the initial box {x:g},{y:g},{w:g},{h:g} has no area: give x,y,w,h with w and h > 0")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise InputError(
            f"the initial box {x:g},{y:g},{w:g},{h:g} lies outside the {width}x{height} frame: give one that overlaps it"
        )
    return x, y, w, h


class SiameseTracker:
    """A single-object tracker over an inference backend; its state is the target's centre and size in pixels.

    The tracker owns its backend: ``close()``, or leaving a ``with`` block, closes it. ``bundle`` is the bundle it
    was opened from, when it was (``open_tracker`` sets it; reports read its files and cost).

    ``long_term=True`` (SiamRPN-LT style): while the target is lost, each frame also searches tiles of the whole
    frame (``runtime.long_term``) with the same search model and crop size, at the target's size when it was lost.
    The tracker keeps following the local candidate and reports it, with ``lost=True``, so that tracking goes on
    where the flag was a false alarm; but the target's size stays as it was, unless that candidate is confident on
    its own (its one-frame confidence is not lost), and the template never changes. A tile's candidate whose
    one-frame confidence reaches ``settings.redetect_threshold`` (and at least ``hyper.lost_threshold``) and beats
    the local one re-acquires the target: the tracker jumps to its centre, keeping the size, and the lost signal
    restarts from that confidence. Without long-term mode, tracking and every box are as before:
    only ``score`` and ``lost`` come from the lost signal.
    """

    def __init__(
        self,
        meta: BundleMeta,
        backend: InferenceBackend,
        clock: StageClock | None = None,
        bundle: Bundle | None = None,
        long_term: bool = False,
        settings: LostSignalSettings = DEFAULT_SETTINGS,
    ):
        self.meta = meta
        self.backend = backend
        self.bundle = bundle
        #: the family's spec; its step ``locate``s the target in each frame's search outputs
        self.spec = meta.spec
        self._locator = self.spec.locator(meta)
        #: Marks the end of each stage (``runtime.stopwatch.STAGES``) for a profiler's clock.
        self._lap = clock.lap if clock is not None else ignore_lap
        g = meta.geometry
        self._writer = InputWriter(meta)
        self._z_cropper = geo.Cropper(g.exemplar_size)
        self._x_cropper = geo.Cropper(g.instance_size)
        self._frame_shape: tuple[int, int] | None = None
        self._state: TargetState | None = None
        self.long_term = long_term
        self._detector = LostDetector(meta.hyper.lost_threshold, settings)
        self._redetect_threshold = max(settings.redetect_threshold, meta.hyper.lost_threshold)
        #: the tiles searched while the target is lost in long-term mode, else None
        self._scan: TileScan | None = None

    # ---------------------------------------------------------------------------------------------- public

    def init(self, frame: np.ndarray, box) -> tuple[float, float, float, float]:
        """Start tracking the target in ``box`` (``x, y, w, h``) of ``frame``; return the box tracked from, the
        part of ``box`` inside the frame (the crops follow the box's size, so it must not exceed the frame's)."""
        frame = as_bgr(frame)
        height, width = frame.shape[:2]
        box = geo.clip_to_frame(*check_init_box(box, height, width), height, width)
        self._frame_shape = (height, width)
        self._state = TargetState.from_box(box)
        self._detector.start()
        self._scan = None
        self._fill = geo.mean_fill(frame)
        crop = template_crop(frame, box, self.meta.geometry, fill=self._fill, cropper=self._z_cropper)
        self._writer.write(crop, self.backend.template_input[0])
        self._lap("preprocess")
        self.backend.run_template()
        self._lap("template")
        return box

    def close(self) -> None:
        """Close the backend. Safe to call twice."""
        self.backend.close()

    def __enter__(self) -> SiameseTracker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, frame: np.ndarray) -> TrackResult:
        """Locate the target in the next frame."""
        if self._frame_shape is None:
            raise InputError("update() called before init(): give the tracker a first frame and box")
        frame = as_bgr(frame)
        if frame.shape[:2] != self._frame_shape:
            h0, w0 = self._frame_shape
            raise InputError(
                f"the frame size changed mid-stream from {w0}x{h0} to {frame.shape[1]}x{frame.shape[0]}: "
                "init the tracker again on the new stream"
            )
        result = self._track(frame)
        self._lap("postprocess")
        return result

    # --------------------------------------------------------------------------------------------- private

    def _search(self, frame: np.ndarray, state: TargetState, windowed: bool = True) -> Candidate:
        """Run the search model on the crops around ``state``; the family's candidate for the target."""
        for i, scale in enumerate(self._locator.scales):
            crop = search_crop(frame, state, self.meta.geometry, scale=scale, fill=self._fill, cropper=self._x_cropper)
            self._writer.write(crop, self.backend.search_input[i])
        self._lap("preprocess")
        outputs = self.backend.run_search()
        self._lap("search")
        return self._locator.locate(outputs, state, windowed)

    def _track(self, frame: np.ndarray) -> TrackResult:
        """Search around the target and move to the candidate; in long-term mode, while the target is lost, also
        scan tiles of the frame and jump to a tile's candidate that re-acquires it. While lost, the size changes
        only with a local candidate that is confident on its own (its one-frame confidence is not lost)."""
        state = self._state
        found = self._search(frame, state)
        jump = self._redetect(frame, found) if self._scan is not None else None
        if jump is not None:
            found, confidence = jump
            self._detector.restart(confidence)
        else:
            confidence = self._detector.update(found.contrast)
        cx, cy, w, h = found.box
        if self._scan is not None and (jump is not None or self._detector.is_lost(self._detector.frame_confidence(found.contrast))):
            w, h = state.w, state.h
        cx, cy, w, h = geo.clip_box(cx, cy, w, h, *self._frame_shape)
        self._state = TargetState(cx, cy, w, h)
        lost = self._detector.is_lost(confidence)
        if self.long_term:
            self._scan = (self._scan or TileScan(self._state, self._frame_shape, self.meta.geometry)) if lost else None
        return TrackResult(geo.center_to_xywh(cx, cy, w, h), confidence, lost, found.score)

    def _redetect(self, frame: np.ndarray, local: Candidate) -> tuple[Candidate, float] | None:
        """The best candidate of this frame's tiles and its one-frame confidence, where it re-acquires the target:
        it reaches the re-detection threshold and beats the ``local`` candidate; else None."""
        found, confidence = self._scan.scan(lambda tile: self._search(frame, tile, windowed=False), self._detector.frame_confidence)
        if confidence >= self._redetect_threshold and confidence > self._detector.frame_confidence(local.contrast):
            return found, confidence
        return None
