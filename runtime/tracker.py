"""The Siamese tracking loop, ``init(frame, box)`` then ``update(frame)``, driven only by bundle metadata.

One loop serves the three families. nanotrack (points + ltrb) and siamrpn (anchors + deltas) score proposals
with the pysot scale/ratio penalty and cosine window; siamfc searches a scale pyramid of upsampled score maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import geometry as geo
from .backends.base import InferenceBackend
from .bundle import Bundle, BundleMeta
from .crops import TargetState, search_crop, search_side, template_crop
from .errors import InputError
from .stopwatch import StageClock, ignore_lap


@dataclass(frozen=True)
class TrackResult:
    """One frame's answer: the box ``x, y, w, h``, the best raw score, and whether it fell below threshold."""

    box: tuple[float, float, float, float]
    score: float
    lost: bool


class InputWriter:
    """Turns a uint8 HWC BGR crop into the network's NCHW float32 input, in place."""

    def __init__(self, meta: BundleMeta):
        layout = meta.input
        self._rgb = layout.color == "RGB"
        self._identity = layout.is_identity
        self._scale = np.float32(layout.scale)
        self._mean = np.asarray(layout.mean, np.float32).reshape(3, 1, 1)
        self._std = np.asarray(layout.std, np.float32).reshape(3, 1, 1)

    def write(self, crop: np.ndarray, dst: np.ndarray) -> None:
        src = crop[..., ::-1] if self._rgb else crop
        np.copyto(dst, src.transpose(2, 0, 1))
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
    """

    def __init__(self, meta: BundleMeta, backend: InferenceBackend, clock: StageClock | None = None, bundle: Bundle | None = None):
        self.meta = meta
        self.backend = backend
        self.bundle = bundle
        #: Marks the end of each stage (``runtime.stopwatch.STAGES``) for a profiler's clock.
        self._lap = clock.lap if clock is not None else ignore_lap
        g = meta.geometry
        self._writer = InputWriter(meta)
        self._z_cropper = geo.Cropper(g.exemplar_size)
        self._x_cropper = geo.Cropper(g.instance_size)
        window = geo.cosine_window(g.score_size * (g.upsample if meta.family == "siamfc" else 1))
        if meta.family == "nanotrack":
            self._grid = geo.point_grid(g.score_size, g.stride)
            self._decode = geo.decode_ltrb
            self._window = window
        elif meta.family == "siamrpn":
            self._grid = geo.anchor_grid(g.score_size, g.stride, g.anchor_ratios, g.anchor_scales)
            self._decode = geo.decode_anchor_deltas
            self._window = np.tile(window, g.num_anchors)
        else:
            # SiamFC blends a response normalised to sum 1, so its window is normalised the same way.
            self._window = (window / window.sum()).reshape(g.score_size * g.upsample, -1)
            self._scale_factors = geo.siamfc_scale_factors(g.num_scales, g.scale_step)
            size = g.score_size * g.upsample
            self._responses = np.empty((g.num_scales, size, size), np.float32)
        self._frame_shape: tuple[int, int] | None = None
        self._state: TargetState | None = None

    # ---------------------------------------------------------------------------------------------- public

    def init(self, frame: np.ndarray, box) -> tuple[float, float, float, float]:
        """Start tracking the target in ``box`` (``x, y, w, h``) of ``frame``; return the box tracked from, the
        part of ``box`` inside the frame (the crops follow the box's size, so it must not exceed the frame's)."""
        frame = as_bgr(frame)
        height, width = frame.shape[:2]
        box = geo.clip_to_frame(*check_init_box(box, height, width), height, width)
        self._frame_shape = (height, width)
        self._state = TargetState.from_box(box)
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
        if self.meta.family == "siamfc":
            score, moved = self._locate_on_score_maps(frame)
        else:
            score, moved = self._locate_among_proposals(frame)
        cx, cy, w, h = geo.clip_box(*moved, *self._frame_shape)
        self._state = TargetState(cx, cy, w, h)
        result = TrackResult(geo.center_to_xywh(cx, cy, w, h), score, score < self.meta.hyper.lost_threshold)
        self._lap("postprocess")
        return result

    # --------------------------------------------------------------------------------------------- families

    def _locate_among_proposals(self, frame: np.ndarray) -> tuple[float, tuple[float, float, float, float]]:
        """The best proposal's raw score, and the target's new centre and size before clipping."""
        g, hyper, state = self.meta.geometry, self.meta.hyper, self._state
        w, h = state.w, state.h
        scale = g.instance_size / search_side(w, h, g)  # search-crop pixels per frame pixel
        crop = search_crop(frame, state, g, fill=self._fill, cropper=self._x_cropper)
        self._writer.write(crop, self.backend.search_input[0])
        self._lap("preprocess")
        outputs = self.backend.run_search()
        self._lap("search")

        # An untrained or badly scaled model can overflow exp(): inf gives the right limits (a score of 0 or 1),
        # and a box of infinite size gets no chance (its NaN penalty becomes 0) instead of a warning per frame.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            scores = geo.two_way_softmax(outputs["cls"].reshape(2, -1))
            pcx, pcy, pw, ph = self._decode(outputs["loc"].reshape(4, -1), self._grid)
            penalty = np.nan_to_num(geo.size_penalty(pw, ph, w * scale, h * scale, hyper.penalty_k), copy=False, nan=0.0)
        best = int(np.argmax(geo.apply_window(penalty * scores, self._window, hyper.window_influence)))

        lr = float(penalty[best] * scores[best]) * hyper.lr
        cx = state.cx + float(pcx[best]) / scale
        cy = state.cy + float(pcy[best]) / scale
        size = geo.smooth(w, float(pw[best]) / scale, lr), geo.smooth(h, float(ph[best]) / scale, lr)
        return float(scores[best]), (cx, cy, *size)

    def _locate_on_score_maps(self, frame: np.ndarray) -> tuple[float, tuple[float, float, float, float]]:
        """The sigmoid of the best scale's peak, and the target's new centre and size before clipping."""
        g, hyper, state = self.meta.geometry, self.meta.hyper, self._state
        s_x = search_side(state.w, state.h, g)
        for i, factor in enumerate(self._scale_factors):
            crop = search_crop(frame, state, g, scale=factor, fill=self._fill, cropper=self._x_cropper)
            self._writer.write(crop, self.backend.search_input[i])
        self._lap("preprocess")
        maps = self.backend.run_search()["score"]
        self._lap("search")
        for i in range(g.num_scales):
            geo.upsample_response(maps[i, 0], g.upsample, out=self._responses[i])
        up = self._responses.shape[1]
        peaks = self._responses.reshape(g.num_scales, -1).max(axis=1)
        # Changing scale must beat staying put by more than the penalty.
        peaks = np.where(np.arange(g.num_scales) == g.num_scales // 2, peaks, peaks * hyper.scale_penalty)
        best_scale = int(np.argmax(peaks))
        response = self._responses[best_scale]
        raw_peak = float(response.max())
        response = response - response.min()
        response /= response.sum() + 1e-16
        response = geo.apply_window(response, self._window, hyper.window_influence)
        row, col = np.unravel_index(int(np.argmax(response)), response.shape)
        dx, dy = geo.response_displacement(int(row), int(col), up, g.stride, g.upsample)
        frame_per_crop = s_x * self._scale_factors[best_scale] / g.instance_size
        size_change = geo.smooth(1.0, float(self._scale_factors[best_scale]), hyper.lr)
        moved = (state.cx + dx * frame_per_crop, state.cy + dy * frame_per_crop, state.w * size_change, state.h * size_change)
        return float(1.0 / (1.0 + np.exp(-raw_peak))), moved
