"""The synthetic world: annotated tracking sequences drawn on the fly, seeded, with nothing to download.

A sequence is a camera panning slowly over a cluttered background while a textured target (an ellipse, rectangle
or convex polygon with a striped, checked or blobby pattern) drifts and wobbles, bouncing off the frame's edges,
and smoothly changes its scale, aspect ratio and in-plane angle. Around it: distractors of the same shape class in
a perturbed copy of the target's colours and pattern, drawn behind or in front of it; occluders that cross its
path; motion blur that comes with speed while the exposure is long; and a light change in gain, colour balance,
offset and gradient.

Everything is a function of ``(seed, index, config)``. Paths are closed-form sums of sinusoids evaluated once per
sequence and textures are drawn once, so ``frame(i)`` draws frame ``i`` from them alone: frames render in any
order, each in about a millisecond at 320x240. Each part of the world (target, background, camera, light, each
distractor and occluder) draws from its own random stream, so switching an effect off leaves the rest unchanged.

Boxes follow the OTB / pysot convention ``x, y, w, h`` with pixel ``j`` covering ``[j, j + 1)``: a box covers
pixels ``x .. x + w - 1``. ``true_boxes`` is the box of the target's outline clipped to the frame, defined on every
frame even when the target is hidden (what an OTB ground truth needs); ``boxes`` and ``visible`` drop the frames
where less than half of the target's area can be seen, hidden by occluders, front distractors or the frame edge.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from .sequence import TrainingSequence, TrainingSet, checked_boxes

#: The background of a world without scenery (``WorldConfig(background=False)``): every other pixel is an object.
FLAT_BACKGROUND = (128, 128, 128)
SHAPES = ("ellipse", "rectangle", "polygon")
PATTERNS = ("stripes", "checks", "blobs")
#: The share of the target's area that must be seen for a frame to count as visible.
VISIBLE_SHARE = 0.5

# Random streams, one per part of the world: np.random.default_rng([seed, index, stream, k]).
_TARGET, _DISTRACTOR, _OCCLUDER, _BACKGROUND, _CAMERA, _LIGHT = range(6)
# Outlines are drawn with 4 fractional bits, so boxes and pixels agree to a sixteenth of a pixel.
_SHIFT = 4
# A sprite's coverage of each pixel is measured on a grid this many times finer.
_SUPER = 4
# An occluder crosses the target once per this many frames.
_FRAMES_PER_OCCLUSION = 100


@dataclass(frozen=True)
class WorldConfig:
    """What the world holds. Sizes and speeds are fractions of the frame's shorter side, so they scale with it."""

    width: int = 320
    height: int = 240
    length: int = 60  # frames per sequence
    distractors: int = 2  # look-alike objects per sequence
    occlusion: bool = True  # occluders cross the target
    blur: bool = True  # motion blur, in proportion to speed
    illumination: bool = True  # gain, colour balance, offset and gradient change over time
    rotation: bool = True  # in-plane rotation of every object
    background: bool = True  # False: a flat FLAT_BACKGROUND and no scenery, to see objects pixel by pixel
    target_size: tuple[float, float] = (0.08, 0.33)  # longer side of the target, log-uniform in this range
    speed: tuple[float, float] = (0.005, 0.03)  # drift per frame, log-uniform in this range
    scale_change: float = 1.5  # largest over smallest size of an object in a sequence, at most
    aspect_change: float = 0.25  # the width/height ratio varies by up to this share either way
    max_rotation: float = 30.0  # degrees either side of upright
    pan: float = 0.1  # how far the camera wanders either way

    def __post_init__(self) -> None:
        problems = [
            (min(self.width, self.height) < 32, "width and height must be at least 32"),
            (self.length < 2, "length must be at least 2 frames"),
            (self.distractors < 0, "distractors must be 0 or more"),
            (not 0 < self.target_size[0] <= self.target_size[1] <= 1, "target_size must be 0 < low <= high <= 1"),
            (not 0 < self.speed[0] <= self.speed[1], "speed must be 0 < low <= high"),
            (self.scale_change < 1, "scale_change must be at least 1"),
            (not 0 <= self.aspect_change < 1, "aspect_change must be in [0, 1)"),
            (self.pan < 0, "pan must be 0 or more"),
        ]
        for bad, message in problems:
            if bad:
                raise ValueError(f"WorldConfig: {message}")


class _Style(NamedTuple):
    pattern: str
    palette: np.ndarray  # (3, 3) BGR colours the pattern runs through
    cycles: float  # repeats of the pattern across the texture
    angle: float  # radians


class Sprite:
    """A textured shape on a path. Per frame ``i``: ``centre[i]`` (px), ``half[i]`` (the half-size of the
    unrotated outline, px), ``angle[i]`` (degrees) and ``smear[i]``, the motion-blur streak (px; zero for none).
    ``polygons[i]`` is the outline in frame coordinates, from which boxes and visibility are measured."""

    def __init__(self, shape: str, texture: np.ndarray, outline: np.ndarray, centre, half, angle):
        self.shape, self.texture = shape, texture
        self.in_front = False  # drawn over the target (distractors only; occluders always are)
        self.centre, self.half, self.angle = centre, half, np.asarray(angle, dtype=np.float64)
        self.smear = np.zeros_like(centre)
        cos, sin = np.cos(np.radians(self.angle)), np.sin(np.radians(self.angle))
        # (N, 2, 2): unit outline coordinates -> offsets from the centre in the frame.
        self.axes = np.stack(
            [np.stack([cos * half[:, 0], -sin * half[:, 1]], -1), np.stack([sin * half[:, 0], cos * half[:, 1]], -1)], 1
        )
        self.polygons = centre[:, None] + outline @ self.axes.transpose(0, 2, 1)

    def draw(self, canvas: np.ndarray, i: int) -> None:
        polygon, smear = self.polygons[i], self.smear[i]
        reach = np.abs(smear) / 2 + 2
        lo = np.maximum(np.floor(polygon.min(0) - reach), 0).astype(int)
        hi = np.minimum(np.ceil(polygon.max(0) + reach), canvas.shape[1::-1]).astype(int)
        if (hi <= lo).any():
            return
        (width, height), size, axes = hi - lo, len(self.texture), self.axes[i]
        # Texture pixel u sits at unit coordinate (2u + 1) / size - 1; frame pixel j at continuous j + 0.5.
        shift = axes @ np.full(2, 1 / size - 1) + self.centre[i] - 0.5 - lo
        matrix = np.hstack([axes * (2 / size), shift[:, None]])
        colour = cv2.warpAffine(self.texture, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # OpenCV's anti-aliased fill spreads the edge a pixel outwards; a fill at _SUPER times the resolution,
        # averaged down, gives each pixel the share of it the outline covers.
        fine = np.zeros((height * _SUPER, width * _SUPER), np.uint8)
        cv2.fillPoly(fine, [_fixed((polygon - lo) * _SUPER)], 255, cv2.LINE_8, _SHIFT)
        alpha = cv2.resize(fine, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        paint = colour.astype(np.float32) * alpha[..., None]
        if np.hypot(*smear) >= 1:
            # Blurring colour and coverage together smears the edges too, as a moving object does.
            kernel = _streak(smear)
            paint, alpha = cv2.filter2D(paint, -1, kernel), cv2.filter2D(alpha, -1, kernel)
        roi = canvas[lo[1] : hi[1], lo[0] : hi[0]]
        roi[:] = (roi * (1 - alpha[..., None]) + paint + 0.5).astype(np.uint8)


class SyntheticSequence(TrainingSequence):
    """One sequence of the synthetic world; see the module docstring. ``target``, ``distractors`` and ``occluders``
    are its sprites, ``background`` the scenery the camera pans over (None without it), and ``seen[i]`` the share
    of the target's area in view on frame ``i``, from which ``visible`` is decided."""

    def __init__(self, seed: int, index: int, config: WorldConfig = WorldConfig()):
        self.seed, self.index, self.config = seed, index, config
        self.name = f"synthetic-{seed}-{index}"
        frame_size = np.array([config.width, config.height], dtype=np.float64)
        short = frame_size.min()

        rng = _stream(seed, index, _TARGET)
        shape, style = SHAPES[rng.integers(len(SHAPES))], _random_style(rng)
        long_side = _log_uniform(rng, config.target_size) * short
        start = frame_size * rng.uniform(0.3, 0.7, 2)
        self.target = _moving_sprite(rng, config, shape, style, long_side, start)

        self.distractors = []
        for k in range(config.distractors):
            rng = _stream(seed, index, _DISTRACTOR, k)
            # Start clear of the target, so the first frame, where a tracker is given its box, shows it plainly.
            for _ in range(20):
                other = frame_size * rng.uniform(0.1, 0.9, 2)
                if np.linalg.norm(other - start) > 1.5 * long_side:
                    break
            sprite = _moving_sprite(rng, config, shape, _similar_style(rng, style), long_side * rng.uniform(0.75, 1.3), other)
            sprite.in_front = bool(rng.random() < 0.5)
            self.distractors.append(sprite)

        passes = max(1, round(config.length / _FRAMES_PER_OCCLUSION)) if config.occlusion else 0
        self.occluders = [_occluder(_stream(seed, index, _OCCLUDER, k), self.target, k, passes) for k in range(passes)]

        rng = _stream(seed, index, _LIGHT)
        waves = np.stack([_wave(rng, config.length, 0.05) for _ in range(8)], 1)
        self._gain = np.exp(0.3 * waves[:, :1] + 0.08 * waves[:, 1:4])  # brightness, and colour balance per channel
        self._bias = 20 * waves[:, 4]
        self._slope = 0.5 * waves[:, 5:7]  # gain change across the frame, left to right and top to bottom
        if config.blur:
            # The exposure lengthens and shortens, as an auto-exposing camera's does, so blur comes and goes.
            exposure = 1.5 * np.maximum(waves[:, 7:8], 0)
            for sprite in [self.target, *self.distractors, *self.occluders]:
                sprite.smear = exposure * np.gradient(sprite.centre, axis=0)

        margin = round(config.pan * short)
        rng = _stream(seed, index, _CAMERA)
        pan = np.stack([_wave(rng, config.length, 0.04) for _ in range(2)], 1)
        self._camera = margin * (1 + pan) + (frame_size - 1) / 2  # centres of the view in the background image
        self.background = (
            _scenery(_stream(seed, index, _BACKGROUND), config.width + 2 * margin, config.height + 2 * margin)
            if config.background
            else None
        )

        front = [d for d in self.distractors if d.in_front] + self.occluders
        self._layers = [d for d in self.distractors if not d.in_front] + [self.target] + front
        self.true_boxes = _clipped_boxes(self.target.polygons, frame_size)
        self.seen = _seen_share(self.target.polygons, [s.polygons for s in front], frame_size)
        self.boxes, self.visible = checked_boxes(self.name, self.true_boxes, self.seen >= VISIBLE_SHARE)

    def frame(self, index: int) -> np.ndarray:
        i = range(len(self))[index]
        size = (self.config.width, self.config.height)
        if self.background is None:
            canvas = np.full((size[1], size[0], 3), FLAT_BACKGROUND, np.uint8)
        else:
            canvas = cv2.getRectSubPix(self.background, size, tuple(self._camera[i]))
        for sprite in self._layers:
            sprite.draw(canvas, i)
        if not self.config.illumination:
            return canvas
        # The gain is linear across the frame, which linear enlargement keeps exact (bar the outermost 8 pixels),
        # so it is worked out on a grid 16 times coarser: most of the per-pixel work is one multiply.
        coarse = (max(2, size[0] // 16), max(2, size[1] // 16))
        across = ((np.arange(coarse[0]) + 0.5) / coarse[0] - 0.5) * self._slope[i, 0]
        down = ((np.arange(coarse[1]) + 0.5) / coarse[1] - 0.5) * self._slope[i, 1]
        gain = (1 + across[None, :, None] + down[:, None, None]) * self._gain[i]
        gain = cv2.resize(gain.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        return cv2.add(cv2.multiply(canvas, gain, dtype=cv2.CV_8U), (float(self._bias[i]),) * 3 + (0.0,))


def synthetic_sequence(seed: int, index: int, config: WorldConfig = WorldConfig()) -> SyntheticSequence:
    """Sequence ``index`` of the world ``seed``: the same arguments always give the same frames and boxes."""
    return SyntheticSequence(seed, index, config)


def synthetic_world(seed: int, count: int, config: WorldConfig = WorldConfig()) -> TrainingSet:
    """Sequences ``0 .. count - 1`` of the world ``seed``; frames are drawn only when asked for."""
    return TrainingSet([synthetic_sequence(seed, index, config) for index in range(count)])


def write_sequence(sequence: TrainingSequence, folder: Path) -> Path:
    """Write ``sequence`` as an OTB folder: ``img/0001.jpg ...`` (JPEG, quality 95) and ``groundtruth_rect.txt``
    with one ``x,y,w,h`` row per frame. OTB has no invisible frames, so a synthetic sequence writes its
    ``true_boxes``; any other sequence must have a box on every frame.

    The folder is built beside ``folder`` and renamed into place, so a reader never sees half a sequence; an
    existing, non-empty ``folder`` is left alone and raises ``FileExistsError``.
    """
    folder = Path(folder)
    boxes = np.asarray(getattr(sequence, "true_boxes", sequence.boxes), dtype=np.float64)
    if not np.isfinite(boxes).all():
        raise ValueError(f"{sequence.name}: OTB ground truth needs a box on every frame, and some frames have none")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / "img").mkdir()
        digits = max(4, len(str(len(sequence))))
        for i in range(len(sequence)):
            path = staging / "img" / f"{i + 1:0{digits}d}.jpg"
            if not cv2.imwrite(str(path), sequence.frame(i), [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"cannot write {path}")
        np.savetxt(staging / "groundtruth_rect.txt", boxes, fmt="%.2f", delimiter=",")
        try:
            staging.rename(folder)
        except OSError:
            if folder.exists():
                raise FileExistsError(f"{folder} already exists and is not empty; remove it or choose another folder") from None
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


# ------------------------------------------------------------------------------------------------ the world


def _stream(seed: int, index: int, part: int, k: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, index, part, k])


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _wave(rng: np.random.Generator, n: int, omega: float, terms: int = 3) -> np.ndarray:
    """A smooth random signal within [-1, 1] over ``n`` frames: sinusoids at about ``omega`` radians per frame."""
    weights = rng.dirichlet(np.ones(terms))
    omegas = omega * rng.uniform(0.5, 1.5, terms)
    phases = rng.uniform(0, 2 * np.pi, terms)
    return np.sin(np.arange(n)[:, None] * omegas + phases) @ weights


def _bounce(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``x`` folded into ``[lo, hi]``, as a point moving freely would be by bouncing off the walls."""
    span = hi - lo
    return lo + span - np.abs(np.mod(x - lo, 2 * span) - span)


def _moving_sprite(rng, config: WorldConfig, shape: str, style: _Style, long_side: float, start: np.ndarray) -> Sprite:
    """An object that drifts and wobbles from ``start``, bouncing so its centre stays inside the frame (it may half
    leave it), while its size, aspect ratio and angle change smoothly."""
    n, frame_size = config.length, np.array([config.width, config.height], dtype=np.float64)
    outline = _outline(rng, shape)
    stubby = rng.uniform(0.45, 1.0)
    base = long_side / 2 * (np.array([1, stubby]) if rng.random() < 0.5 else np.array([stubby, 1]))
    scale = np.exp(np.log(config.scale_change) / 2 * _wave(rng, n, 0.08))
    stretch = np.sqrt(np.exp(np.log1p(config.aspect_change) * _wave(rng, n, 0.08)))
    half = base * scale[:, None] * np.stack([stretch, 1 / stretch], 1)
    angle = _wave(rng, n, 0.06) * (config.max_rotation if config.rotation else 0.0)

    speed = _log_uniform(rng, config.speed) * frame_size.min()
    heading = rng.uniform(0, 2 * np.pi)
    wobble = np.stack([_wave(rng, n, 0.1) for _ in range(2)], 1)
    # The wobble's amplitude is set so its speed is about the drift's: the path curves without doubling back often.
    free = (
        start + np.arange(n)[:, None] * speed * np.array([np.cos(heading), np.sin(heading)]) + speed / 0.1 * (wobble - wobble[0])
    )
    centre = _bounce(free, 0.05 * frame_size, 0.95 * frame_size)

    texture = _texture(rng, style, int(np.clip(np.ceil(2 * half.max()), 8, 256)))
    return Sprite(shape, texture, outline, centre, half, angle)


def _occluder(rng, target: Sprite, k: int, passes: int) -> Sprite:
    """An object that crosses the target's path in a straight line around a moment in the ``k``-th of ``passes``
    equal spans of the sequence, sized to cover most of the target as it passes."""
    n = len(target.centre)
    side = 2 * target.half.max()
    shape = ("rectangle", "ellipse")[rng.integers(2)]
    half = side / 2 * rng.uniform(1.0, 1.6, 2)
    duration = rng.uniform(8, 20)  # frames it takes to cross
    # Never in the first frames, where a tracker is given the target.
    meet = int(np.clip(round((k + rng.uniform(0.25, 0.85)) * n / passes), min(duration, n - 1), n - 1))
    heading = rng.uniform(0, 2 * np.pi)
    velocity = (np.linalg.norm(half) + side / 2) * 2 / duration * np.array([np.cos(heading), np.sin(heading)])
    centre = target.centre[meet] + (np.arange(n) - meet)[:, None] * velocity
    size = int(np.clip(np.ceil(2 * half.max()), 8, 256))
    if rng.random() < 0.5:
        texture = _scenery(rng, size, size)  # a piece of clutter, hard to tell from the background
    else:
        texture = np.clip(rng.uniform(0, 255, 3) + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
    return Sprite(shape, texture, _outline(rng, shape), centre, np.tile(half, (n, 1)), np.full(n, rng.uniform(-45, 45)))


def _outline(rng, shape: str) -> np.ndarray:
    """Outline vertices scaled so the unrotated outline spans exactly [-1, 1] on both axes."""
    if shape == "ellipse":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    elif shape == "rectangle":
        angles = np.pi / 4 * np.array([1, 3, 5, 7])
    else:
        # Jittered even spacing keeps the polygon convex and well spread, never a sliver.
        count = rng.integers(5, 9)
        angles = (np.arange(count) + rng.uniform(-0.3, 0.3, count)) * 2 * np.pi / count + rng.uniform(0, 2 * np.pi)
    points = np.stack([np.cos(angles), np.sin(angles)], 1)
    lo, hi = points.min(0), points.max(0)
    return 2 * (points - lo) / (hi - lo) - 1


def _random_style(rng) -> _Style:
    return _Style(
        PATTERNS[rng.integers(len(PATTERNS))], rng.uniform(0, 255, (3, 3)), rng.uniform(1.5, 4.0), rng.uniform(0, np.pi)
    )


def _similar_style(rng, style: _Style) -> _Style:
    """The same pattern in slightly shifted colours, scale and angle: a look-alike."""
    palette = np.clip(style.palette + rng.normal(0, 15, style.palette.shape), 0, 255)
    return _Style(style.pattern, palette, style.cycles * rng.uniform(0.8, 1.25), style.angle + rng.normal(0, 0.3))


def _texture(rng, style: _Style, size: int) -> np.ndarray:
    """A ``size`` x ``size`` BGR image of the style's pattern, with a little grain."""
    ramp = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    cos, sin = np.cos(style.angle), np.sin(style.angle)
    along, across = ramp[None, :] * cos + ramp[:, None] * sin, ramp[:, None] * cos - ramp[None, :] * sin
    if style.pattern == "stripes":
        value = 0.5 + 0.5 * np.sin(2 * np.pi * style.cycles * along)
    elif style.pattern == "checks":
        squares = (np.sin(2 * np.pi * style.cycles * along) * np.sin(2 * np.pi * style.cycles * across) > 0).astype(np.float32)
        value = cv2.GaussianBlur(squares, (0, 0), 0.7)
    else:
        grid = rng.random((int(style.cycles) + 2,) * 2).astype(np.float32)
        value = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        value = (value - value.min()) / (value.max() - value.min() + 1e-6)
    levels = np.linspace(0, 1, 256)
    steps = np.linspace(0, 1, len(style.palette))
    lut = np.stack([np.interp(levels, steps, style.palette[:, c]) for c in range(3)], 1)
    image = lut[np.clip(value * 255, 0, 255).astype(np.uint8)] + rng.normal(0, 4, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _scenery(rng, width: int, height: int) -> np.ndarray:
    """Clutter: a smooth colour field under random shapes, lines and patterned patches, slightly out of focus."""
    # Mostly grey levels with a tint: real scenes are far less saturated than random colours.
    cells = rng.uniform(40, 210, (3, 4, 1)) + rng.normal(0, 25, (3, 4, 3))
    field = cv2.resize(cells.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(field, 0, 255).astype(np.uint8)
    scale = np.sqrt(width * height)
    for _ in range(rng.integers(15, 35)):
        colour = rng.integers(0, 256, 3).tolist()
        x, y = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        extent = max(2, int(scale * rng.uniform(0.02, 0.15)))
        kind, thickness = rng.integers(3), int(rng.choice([-1, 1, 2, 3]))
        if kind == 0:
            cv2.circle(image, (x, y), extent, colour, thickness, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (x, y), (x + extent, y + int(extent * rng.uniform(0.3, 2))), colour, thickness, cv2.LINE_AA)
        else:
            end = (x + int(rng.normal(0, 2 * extent)), y + int(rng.normal(0, 2 * extent)))
            cv2.line(image, (x, y), end, colour, max(thickness, 1), cv2.LINE_AA)
    for _ in range(rng.integers(1, 4)):
        extent = max(4, int(scale * rng.uniform(0.05, 0.2)))
        x, y = rng.integers(0, max(1, width - extent)), rng.integers(0, max(1, height - extent))
        patch = _texture(rng, _random_style(rng), extent)[: height - y, : width - x]
        image[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    return cv2.GaussianBlur(image, (0, 0), 0.8)


# ------------------------------------------------------------------------------------------------- geometry


def _fixed(points: np.ndarray) -> np.ndarray:
    """Continuous coordinates -> OpenCV's fixed-point pixel-centre coordinates for drawing with ``_SHIFT``."""
    return np.round((points - 0.5) * (1 << _SHIFT)).astype(np.int32)


def _streak(smear: np.ndarray) -> np.ndarray:
    """A normalised line kernel along ``smear``: the path a point travels while the shutter is open."""
    reach = int(np.ceil(np.abs(smear).max() / 2))
    kernel = np.zeros((2 * reach + 1,) * 2, np.uint8)
    middle = np.array([reach + 0.5, reach + 0.5])
    cv2.line(kernel, _fixed(middle - smear / 2), _fixed(middle + smear / 2), 255, 1, cv2.LINE_AA, _SHIFT)
    kernel = kernel.astype(np.float32)
    return kernel / kernel.sum()


def _clipped_boxes(polygons: np.ndarray, frame_size: np.ndarray) -> np.ndarray:
    lo = np.maximum(polygons.min(1), 0)
    hi = np.minimum(polygons.max(1), frame_size)
    return np.hstack([lo, hi - lo])


def _seen_share(polygons: np.ndarray, covers: list[np.ndarray], frame_size: np.ndarray) -> np.ndarray:
    """Per frame, the share of the outline's area inside the frame and under none of the ``covers``' outlines."""
    width, height = frame_size.astype(int)
    seen = np.empty(len(polygons))
    for i, polygon in enumerate(polygons):
        lo = np.floor(polygon.min(0)).astype(int)
        hi = np.ceil(polygon.max(0)).astype(int) + 1
        mask = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
        cv2.fillPoly(mask, [_fixed(polygon - lo)], 1, cv2.LINE_8, _SHIFT)
        whole = np.count_nonzero(mask)
        for cover in covers:
            cv2.fillPoly(mask, [_fixed(cover[i] - lo)], 0, cv2.LINE_8, _SHIFT)
        inside = mask[max(-lo[1], 0) : height - lo[1], max(-lo[0], 0) : width - lo[0]]
        seen[i] = np.count_nonzero(inside) / max(whole, 1)
    return seen
