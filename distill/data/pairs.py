"""Training pairs: a template crop and a search crop, made by the runtime's own crops (``template_crop`` and
``search_crop``), with the target's box in the search crop exactly as the tracker would decode it.

Pair ``i`` is a pure function of ``(seed, i)``: any process can make any pair, in any order. That is what lets a
resumed run continue with the very pairs it would have seen, and lets distributed ranks split the work by index
without a shared random state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgetrack.runtime import geometry as geo
from edgetrack.runtime.bundle import Geometry
from edgetrack.runtime.crops import TargetState, crop_pixels, search_crop, search_side, template_crop, template_side
from edgetrack.runtime.errors import SourceError

from .sequence import TrainingSequence

#: How many times a pair is redrawn when a frame cannot be read, before the error is raised.
MAX_REDRAWS = 8


@dataclass(frozen=True)
class AugmentConfig:
    """pysot's augmentation, as fractions of a crop and probabilities."""

    #: largest shift of the crop centre, in crop pixels
    template_shift: float = 4.0
    search_shift: float = 64.0
    #: largest relative change of the crop size
    template_scale: float = 0.05
    search_scale: float = 0.18
    #: probabilities of a Gaussian blur, a colour change and a grey search crop; flip applies to both crops
    blur: float = 0.2
    colour: float = 0.8
    grey: float = 0.05
    flip: float = 0.0
    #: probability of a motion-blur streak on the search crop (``streak_kernel``: an even length, from 2 crop pixels
    #: up to ``motion_blur_length``, at a random angle), the smear of a fast target or a panning camera; at 0 nothing
    #: is drawn, so every other pair stays as it was
    motion_blur: float = 0.0
    motion_blur_length: int = 25


@dataclass(frozen=True)
class PairConfig:
    #: template and search frames are at most this many frames apart
    max_gap: int = 100
    #: share of pairs whose search crop holds no target (another sequence's frame)
    negative: float = 0.2
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class DataSource:
    """Sequences of one kind with their share of the pairs."""

    name: str
    sequences: Sequence[TrainingSequence]
    weight: float = 1.0


@dataclass(frozen=True, eq=False)
class Pair:
    """``template`` and ``search`` are uint8 BGR crops. ``box`` is ``cx, cy, w, h`` in search-crop pixels with the
    centre as an offset from the crop centre, or ``None``: a negative pair when ``labelled``, otherwise a pair of
    unlabeled frames whose target the teacher will say. ``redraws`` counts unreadable frames skipped on the way."""

    template: np.ndarray
    search: np.ndarray
    box: tuple[float, float, float, float] | None
    labelled: bool
    redraws: int = 0


class PairSampler:
    def __init__(self, sources: Sequence[DataSource], geometry: Geometry, config: PairConfig = PairConfig(), seed: int = 0):
        self.sources = [s for s in sources if len(s.sequences)]
        if not self.sources:
            raise SourceError("no training sequences: every data source is empty (check the --data paths)")
        weights = np.array([s.weight for s in self.sources], np.float64)
        self.source_p = weights / weights.sum()
        self.labelled = [[seq for seq in s.sequences if seq.labelled] for s in self.sources]
        self.negatives_from = [seq for s in self.labelled for seq in s]
        self.g, self.config, self.seed = geometry, config, seed
        self._template_cropper = geo.Cropper(geometry.exemplar_size)
        self._search_cropper = geo.Cropper(geometry.instance_size)

    def pair(self, index: int) -> Pair:
        rng = np.random.default_rng([self.seed, index])
        for redraws in range(MAX_REDRAWS + 1):
            try:
                return self._draw(rng, redraws)
            except SourceError:
                if redraws == MAX_REDRAWS:
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------------------------------

    def _draw(self, rng: np.random.Generator, redraws: int) -> Pair:
        source = int(rng.choice(len(self.sources), p=self.source_p))
        sequence = self.sources[source].sequences[int(rng.integers(len(self.sources[source].sequences)))]
        flip = rng.random() < self.config.augment.flip
        if not sequence.labelled:
            return self._unlabeled(rng, sequence, flip, redraws)
        template_index, search_index = self._frame_pair(rng, sequence)
        template_frame = sequence.frame(template_index)
        template = self._crop_template(rng, template_frame, sequence.boxes[template_index], flip)
        if rng.random() < self.config.negative and (other := self._other_sequence(rng, sequence)) is not None:
            index = int(rng.choice(np.flatnonzero(other.visible)))
            search, _ = self._crop_search(rng, other.frame(index), other.boxes[index], flip)
            return Pair(template, search, None, True, redraws)
        search, box = self._crop_search(rng, sequence.frame(search_index), sequence.boxes[search_index], flip)
        return Pair(template, search, box, True, redraws)

    def _other_sequence(self, rng: np.random.Generator, sequence: TrainingSequence) -> TrainingSequence | None:
        """A labelled sequence other than ``sequence`` for a negative search crop (a crop of ``sequence`` would hold
        the template's own target); None when there is no other, and the pair is then a positive one."""
        for _ in range(32):
            other = self.negatives_from[int(rng.integers(len(self.negatives_from)))]
            if other is not sequence:
                return other
        return None

    def _frame_pair(self, rng: np.random.Generator, sequence: TrainingSequence) -> tuple[int, int]:
        visible = np.flatnonzero(sequence.visible)
        template = int(rng.choice(visible))
        near = visible[np.abs(visible - template) <= self.config.max_gap]
        return template, int(rng.choice(near))

    def _unlabeled(self, rng: np.random.Generator, sequence: TrainingSequence, flip: bool, redraws: int) -> Pair:
        """A box drawn anywhere in one frame, and a search crop around the same place in a nearby frame."""
        n = len(sequence)
        template_index = int(rng.integers(n))
        lo, hi = max(0, template_index - self.config.max_gap), min(n - 1, template_index + self.config.max_gap)
        search_index = int(rng.integers(lo, hi + 1))
        frame = sequence.frame(template_index)
        height, width = frame.shape[:2]
        side = rng.uniform(0.1, 0.35) * min(height, width)
        aspect = math.exp(rng.uniform(-0.7, 0.7))
        w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
        box = (rng.uniform(0, width - w), rng.uniform(0, height - h), w, h)
        template = self._crop_template(rng, frame, box, flip)
        search, _ = self._crop_search(rng, sequence.frame(search_index), box, flip)
        return Pair(template, search, None, False, redraws)

    def _crop_template(self, rng: np.random.Generator, frame: np.ndarray, box, flip: bool) -> np.ndarray:
        """The template crop of ``box``, rescaled and shifted by up to ``template_shift`` crop pixels."""
        a = self.config.augment
        state = TargetState.from_box(box)
        jitter = 1 + rng.uniform(-a.template_scale, a.template_scale)
        per_pixel = template_side(state.w, state.h, self.g) * jitter / self.g.exemplar_size
        dx, dy = rng.uniform(-a.template_shift, a.template_shift, 2) * per_pixel
        crop = template_crop(frame, box, self.g, scale=jitter, shift=(dx, dy), cropper=self._template_cropper).copy()
        return self._photometric(rng, crop, flip, search=False)

    def _crop_search(self, rng: np.random.Generator, frame: np.ndarray, box, flip: bool):
        """The search crop around ``box`` (shifted and rescaled), and the box in it as the tracker decodes it."""
        a = self.config.augment
        state = TargetState.from_box(box)
        jitter = 1 + rng.uniform(-a.search_scale, a.search_scale)
        # The same round trip as the tracker: crop-pixel offsets from the crop centre, scaled by instance / size.
        scale = self.g.instance_size / crop_pixels(search_side(state.w, state.h, self.g) * jitter)
        dx, dy = rng.uniform(-a.search_shift, a.search_shift, 2) / scale
        crop = search_crop(frame, state, self.g, scale=jitter, shift=(dx, dy), cropper=self._search_cropper).copy()
        target = (-dx * scale, -dy * scale, state.w * scale, state.h * scale)
        if flip:
            target = (-target[0], *target[1:])
        return self._photometric(rng, crop, flip, search=True), target

    def _photometric(self, rng: np.random.Generator, crop: np.ndarray, flip: bool, search: bool) -> np.ndarray:
        a = self.config.augment
        if flip:
            crop = np.ascontiguousarray(crop[:, ::-1])
        if rng.random() < a.colour:
            gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.8, 1.2)
            crop = np.clip(crop * gain + rng.uniform(-15, 15), 0, 255).astype(np.uint8)
        if rng.random() < a.grey:
            crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        if search and rng.random() < a.blur:
            crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.5, 2.0))
        if search and a.motion_blur and rng.random() < a.motion_blur:
            half = int(rng.integers(1, max(a.motion_blur_length // 2, 1) + 1))
            crop = cv2.filter2D(crop, -1, streak_kernel(half, rng.uniform(0.0, 180.0)), borderType=cv2.BORDER_REFLECT)
        return crop


def streak_kernel(half: int, angle: float) -> np.ndarray:
    """An averaging kernel along a line through its centre, ``half`` pixels to each side, at ``angle`` degrees: the
    blur of a point moving ``2 half`` pixels during the exposure. Points along the line are splatted bilinearly,
    in pairs mirrored about the centre, so the kernel is symmetric (it does not move the target); it sums to 1 (the
    crop keeps its brightness). The synthetic world's ``_streak`` draws the same line with ``cv2.line``, a few
    hundredths of a pixel off centre; it stays, because the shipped students were trained on its frames."""
    side = 2 * half + 1
    samples = 8 * half  # eight per pixel of length, at the midpoints of equal steps, so none falls on an end
    t = (np.arange(samples) + 0.5) * (2 * half / samples) - half
    x, y = half + t * math.cos(math.radians(angle)), half + t * math.sin(math.radians(angle))
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    kernel = np.zeros((side + 1, side + 1))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(kernel, (y0 + dy, x0 + dx), wy * wx)
    kernel = kernel[:side, :side]
    return (kernel / kernel.sum()).astype(np.float32)
