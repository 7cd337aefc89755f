"""Training pairs: the box a pair reports is where its target's pixels are in the search crop, pair ``i`` is a
function of ``(seed, i)`` alone, and unreadable frames are redrawn from elsewhere."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from edgetrack.distill.data import pairs as pairs_module
from edgetrack.distill.data.pairs import AugmentConfig, DataSource, PairConfig, PairSampler, streak_kernel
from edgetrack.distill.data.sequence import ImageSequence, TrainingSequence
from edgetrack.distill.data.synthetic import FLAT_BACKGROUND, WorldConfig, synthetic_sequence
from edgetrack.runtime.bundle import Geometry
from edgetrack.runtime.errors import SourceError

# nanotrack-v3's geometry, written out so that this file runs without torch (checked against the preset below).
GEOMETRY = Geometry(exemplar_size=127, instance_size=255, stride=16, score_size=15)
#: The target alone on a flat grey background: every pixel that is not grey is the target's. Large targets in a
#: large frame keep the search crop near 1 crop pixel per frame pixel, so a pixel of rounding stays a pixel.
BARE = WorldConfig(
    width=480,
    height=360,
    length=20,
    distractors=0,
    occlusion=False,
    blur=False,
    illumination=False,
    background=False,
    target_size=(0.3, 0.35),
)
#: Geometric augmentation only (shift and scale): nothing changes a pixel's colour.
PLAIN = AugmentConfig(colour=0.0, grey=0.0, blur=0.0, flip=0.0)
CENTRE = (GEOMETRY.instance_size - 1) / 2


def test_geometry_is_the_zoo_preset():
    pytest.importorskip("torch", reason="the model zoo needs torch")
    from edgetrack.distill.models import preset

    assert preset("nanotrack-v3").geometry == GEOMETRY


def bare_sequences(count: int = 3) -> list[TrainingSequence]:
    return [synthetic_sequence(3, index, BARE) for index in range(count)]


def sampler(sequences, seed: int = 5, **config) -> PairSampler:
    return PairSampler([DataSource("s", sequences)], GEOMETRY, PairConfig(**{"negative": 0.0, "augment": PLAIN, **config}), seed=seed)


def drawn_box(crop: np.ndarray) -> tuple[float, float, float, float]:
    """The box of the crop's non-grey pixels as ``cx, cy`` offsets from the crop centre and ``w, h`` (pixel
    ``j`` covers ``[j, j + 1)``, so a run ``a .. b`` is ``b - a + 1`` wide and centred on pixel ``(a + b) / 2``)."""
    # Above the mean-colour padding of a crop that leaves the frame (a few levels from grey), below the target.
    mask = np.abs(crop.astype(np.int16) - np.array(FLAT_BACKGROUND)).max(axis=2) > 12
    ys, xs = np.nonzero(mask)
    centre = (crop.shape[1] - 1) / 2
    return (xs.min() + xs.max()) / 2 - centre, (ys.min() + ys.max()) / 2 - centre, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_the_box_is_where_the_targets_pixels_are_in_the_search_crop(flip):
    s = sampler(bare_sequences(), augment=replace(PLAIN, flip=flip))
    offsets = []
    for index in range(40):
        pair = s.pair(index)
        assert pair.labelled and pair.redraws == 0 and pair.search.shape == (255, 255, 3) and pair.template.shape == (127, 127, 3)
        got = drawn_box(pair.search)
        # pysot's crop rounds its corner and sits about a frame pixel off the box centre, which the tracker's
        # crop repeats; a target shifted the wrong way or sized before the scale change would be off by tens.
        np.testing.assert_allclose(got, pair.box, atol=2.5, err_msg=f"pair {index}")
        # The template is the target, shifted by at most 4 crop pixels.
        tx, ty, _, _ = drawn_box(pair.template)
        assert abs(tx) <= 4 + 2 and abs(ty) <= 4 + 2, index
        offsets.append(pair.box[:2])
    # The search shift (up to 64 crop pixels either way) is exercised, on both sides.
    offsets = np.array(offsets)
    assert offsets.min() < -30 and offsets.max() > 30


def test_flip_mirrors_both_crops_and_the_box():
    plain, flipped = sampler(bare_sequences(), seed=9), sampler(bare_sequences(), seed=9, augment=replace(PLAIN, flip=1.0))
    for index in range(6):
        a, b = plain.pair(index), flipped.pair(index)
        # The flip decision is drawn either way, so both samplers make the same pair; the crop centre is a pixel
        # centre (127 of 0 .. 254), so mirroring negates the horizontal offset exactly.
        np.testing.assert_array_equal(b.search, a.search[:, ::-1])
        np.testing.assert_array_equal(b.template, a.template[:, ::-1])
        assert b.box == pytest.approx((-a.box[0], *a.box[1:]))
        assert np.sign(drawn_box(b.search)[0]) == np.sign(b.box[0]) or abs(b.box[0]) < 3


@pytest.mark.parametrize("half, angle", [(1, 0.0), (4, 90.0), (6, 30.0), (12, 77.0)])
def test_a_streak_kernel_is_a_centred_line(half, angle):
    kernel = streak_kernel(half, angle)
    assert kernel.shape == (2 * half + 1,) * 2 and kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-7)  # symmetric: it does not move the target
    ys, xs = np.nonzero(kernel > 1e-3)
    direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    offsets = np.stack([xs - half, ys - half], axis=1)
    across = np.abs(offsets @ np.array([-direction[1], direction[0]]))
    assert across.max() < 1.5 and np.abs(offsets @ direction).max() > half - 1


def test_horizontal_streaks_by_hand():
    # A point moving uniformly from -half to +half pixels, splatted linearly: each end pixel gets half the share of
    # an inner one.
    np.testing.assert_allclose(streak_kernel(1, 0.0), [[0, 0, 0], [0.25, 0.5, 0.25], [0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(streak_kernel(2, 0.0)[2], [0.125, 0.25, 0.25, 0.25, 0.125], atol=1e-6)
    np.testing.assert_allclose(streak_kernel(2, 90.0)[:, 2], [0.125, 0.25, 0.25, 0.25, 0.125], atol=1e-6)


def test_motion_blur_smears_the_search_crop_only():
    plain, blurred = sampler(bare_sequences(), seed=3), sampler(bare_sequences(), seed=3, augment=replace(PLAIN, motion_blur=1.0))
    for index in range(6):
        a, b = plain.pair(index), blurred.pair(index)
        np.testing.assert_array_equal(b.template, a.template)
        assert b.box == a.box
        assert abs(float(b.search.mean()) - float(a.search.mean())) < 1.0
        # the target's edges are spread: fewer large steps between neighbouring pixels
        steps = [np.abs(np.diff(s.astype(np.int16), axis=axis)).max(axis=2) for s in (a.search, b.search) for axis in (0, 1)]
        assert (steps[2] > 40).sum() + (steps[3] > 40).sum() < (steps[0] > 40).sum() + (steps[1] > 40).sum()


def test_a_pair_is_a_function_of_the_seed_and_its_index():
    sequences = bare_sequences()
    config = {"negative": 0.3, "augment": AugmentConfig(flip=0.5)}  # every random step on
    s = sampler(sequences, seed=1, **config)
    first = [s.pair(i) for i in (7, 3, 7)]
    again = sampler(sequences, seed=1, **config).pair(7)
    other = sampler(sequences, seed=2, **config).pair(7)
    for pair in (first[2], again):
        np.testing.assert_array_equal(pair.template, first[0].template)
        np.testing.assert_array_equal(pair.search, first[0].search)
        assert pair.box == first[0].box and pair.labelled == first[0].labelled
    assert not np.array_equal(other.search, first[0].search)
    assert not np.array_equal(first[1].search, first[0].search)


class Recorded(TrainingSequence):
    """A sequence that logs which of its frames are read."""

    def __init__(self, inner: TrainingSequence, log: list):
        self.inner, self.log = inner, log
        self.name, self.boxes, self.visible = inner.name, inner.boxes, inner.visible

    def frame(self, index: int) -> np.ndarray:
        self.log.append(self.name)
        return self.inner.frame(index)


def test_negative_pairs_search_another_sequence():
    log: list[str] = []
    sequences = [Recorded(seq, log) for seq in bare_sequences(2)]
    s = sampler(sequences, negative=1.0)
    for index in range(12):
        log.clear()
        pair = s.pair(index)
        assert pair.box is None and pair.labelled and pair.redraws == 0
        # One read for the template, one for the search crop, from the other sequence: the search crop of a
        # negative pair must not hold the template's target.
        assert len(log) == 2 and log[0] != log[1], (index, log)


def test_a_lone_sequence_makes_no_negative_pairs():
    # With nowhere else to look, a negative would show the template's own target labelled as background.
    pair = sampler(bare_sequences(1), negative=1.0).pair(0)
    assert pair.labelled and pair.box is not None
    np.testing.assert_allclose(drawn_box(pair.search), pair.box, atol=2.5)


def write_frames(folder, count: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.png"
        assert cv2.imwrite(str(path), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_unlabeled_frames_give_unlabelled_pairs(tmp_path):
    paths = write_frames(tmp_path, 4)
    sequence = ImageSequence("video", paths, np.full((4, 4), np.nan))
    assert not sequence.labelled
    s = sampler([sequence], negative=0.5)
    for index in range(5):
        pair = s.pair(index)
        assert pair.box is None and not pair.labelled
        assert pair.template.shape == (127, 127, 3) and pair.search.shape == (255, 255, 3)


def test_unreadable_frames_are_redrawn_from_another_sequence(tmp_path):
    paths = write_frames(tmp_path, 3)
    broken = ImageSequence("broken", paths, [(10, 10, 20, 15)] * 3)
    for path in paths:
        path.unlink()
    good = synthetic_sequence(3, 0, BARE)
    s = PairSampler([DataSource("broken", [broken]), DataSource("good", [good])], GEOMETRY, PairConfig(negative=0.0, augment=PLAIN), seed=4)
    made = [s.pair(index) for index in range(12)]
    redrawn = [pair for pair in made if pair.redraws]
    assert redrawn and len(redrawn) < len(made)
    for pair in made:
        # Whatever was skipped, the pair is the good sequence's, and its box is where its target is.
        np.testing.assert_allclose(drawn_box(pair.search), pair.box, atol=2.5)
    assert s.pair(made.index(redrawn[0])).redraws == redrawn[0].redraws

    everything_broken = PairSampler([DataSource("broken", [broken])], GEOMETRY, PairConfig(), seed=4)
    with pytest.raises(SourceError, match="cannot read frame"):
        everything_broken.pair(0)


def test_redraws_give_up_after_max_redraws(tmp_path, monkeypatch):
    paths = write_frames(tmp_path, 2)
    broken = ImageSequence("broken", paths, [(10, 10, 20, 15)] * 2)
    reads = []
    monkeypatch.setattr(ImageSequence, "frame", lambda self, index: reads.append(index) or (_ for _ in ()).throw(SourceError("gone")))
    with pytest.raises(SourceError, match="gone"):
        PairSampler([DataSource("broken", [broken])], GEOMETRY, PairConfig(negative=0.0), seed=0).pair(0)
    assert len(reads) == pairs_module.MAX_REDRAWS + 1


def test_only_empty_sources_is_an_error():
    with pytest.raises(SourceError, match="every data source is empty"):
        PairSampler([DataSource("a", []), DataSource("b", [])], GEOMETRY)
    with pytest.raises(SourceError):
        PairSampler([], GEOMETRY)
    # An empty source beside a full one is dropped, and gets no share of the pairs.
    s = PairSampler([DataSource("a", [], weight=5.0), DataSource("b", bare_sequences(1))], GEOMETRY)
    assert [source.name for source in s.sources] == ["b"] and s.source_p.tolist() == [1.0]
