"""The exemplar (template) and search crops, cut one way for the tracker, export parity, int8 calibration and
training pairs, so that a model is trained, checked and calibrated on the very pixels it is run on.

A crop is the square around the target's centre whose side is ``geometry.context_size`` of the target for the
exemplar, and ``instance_size / exemplar_size`` times that for the search region; the side is rounded to whole
frame pixels, the part outside the frame is painted with the frame's mean colour, and the square is resized to
the model's input size (``geometry.Cropper``, pysot's sub-window crop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bundle import Geometry
from .geometry import Cropper, context_size, mean_fill, xywh_to_center


@dataclass(frozen=True, slots=True)
class TargetState:
    """The tracked target: its centre ``cx, cy`` (pysot's, see ``geometry.xywh_to_center``) and size ``w, h``, in
    frame pixels."""

    cx: float
    cy: float
    w: float
    h: float

    @classmethod
    def from_box(cls, box) -> TargetState:
        """The state of an ``x, y, w, h`` box."""
        return cls(*xywh_to_center(box))


def template_side(w: float, h: float, geometry: Geometry) -> float:
    """Side of the exemplar region around a ``w x h`` target, in frame pixels, before rounding."""
    return context_size(w, h, geometry.context_amount)


def search_side(w: float, h: float, geometry: Geometry) -> float:
    """Side of the search region around a ``w x h`` target: the exemplar region times ``instance / exemplar``."""
    return template_side(w, h, geometry) * (geometry.instance_size / geometry.exemplar_size)


def crop_pixels(side: float) -> int:
    """The whole number of frame pixels a crop of ``side`` spans: Python's ``round``, and at least one."""
    return max(1, round(side))


def template_crop(
    frame: np.ndarray,
    box,
    geometry: Geometry,
    *,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    fill: np.ndarray | None = None,
    cropper: Cropper | None = None,
) -> np.ndarray:
    """The ``exemplar_size`` square uint8 BGR crop of the target in ``box`` (``x, y, w, h``).

    ``scale`` multiplies the region's side and ``shift`` moves its centre by ``dx, dy`` frame pixels (training's
    jitter; the tracker cuts with neither). ``fill`` is the padding colour, the frame's ``mean_fill`` unless given.
    With a ``cropper`` of ``exemplar_size`` the crop is that cropper's reused buffer; without one, a new array.
    """
    state = TargetState.from_box(box)
    side = template_side(state.w, state.h, geometry) * scale
    return _cut(frame, state, side, geometry.exemplar_size, shift, fill, cropper)


def search_crop(
    frame: np.ndarray,
    state: TargetState,
    geometry: Geometry,
    *,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    fill: np.ndarray | None = None,
    cropper: Cropper | None = None,
) -> np.ndarray:
    """The ``instance_size`` square uint8 BGR search crop around the target ``state``.

    ``scale`` multiplies the region's side (a SiamFC pyramid level, or training's jitter) and ``shift`` moves
    its centre by ``dx, dy`` frame pixels. ``fill`` is the padding colour, the frame's ``mean_fill`` unless
    given: the tracker passes its first frame's, as pysot does. With a ``cropper`` of ``instance_size`` the crop
    is that cropper's reused buffer, so a tracking step allocates nothing; without one, a new array.
    """
    side = search_side(state.w, state.h, geometry) * scale
    return _cut(frame, state, side, geometry.instance_size, shift, fill, cropper)


def _cut(
    frame: np.ndarray,
    state: TargetState,
    side: float,
    model_size: int,
    shift: tuple[float, float],
    fill: np.ndarray | None,
    cropper: Cropper | None,
) -> np.ndarray:
    """The crop of ``side`` frame pixels centred on ``state`` moved by ``shift``, resized to ``model_size``."""
    if cropper is None:
        cropper = Cropper(model_size)
    elif cropper.model_size != model_size:
        raise ValueError(f"a cropper of {cropper.model_size} pixels cannot cut a {model_size}-pixel crop")
    colour = mean_fill(frame) if fill is None else fill
    return cropper.crop(frame, state.cx + shift[0], state.cy + shift[1], crop_pixels(side), colour)
