"""One crop procedure: the tracker, the comparison crops of parity and the training pair sampler cut exactly the crops of
``runtime.crops``, and those crops are checked pixel by pixel on a hand-worked case."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import synthetic

from edgetrack.distill.data.pairs import AugmentConfig, DataSource, PairConfig, PairSampler
from edgetrack.distill.data.sequence import ImageSequence
from edgetrack.runtime import geometry as geo
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.bundle import Geometry, InputLayout
from edgetrack.runtime.compare import SEARCH_CROPS, real_crops
from edgetrack.runtime.crops import TargetState, crop_pixels, search_crop, template_crop
from edgetrack.runtime.tracker import InputWriter, SiameseTracker

#: A textured frame and a box whose search region runs past the frame's right edge, so crops are padded.
FRAME = np.random.default_rng(11).integers(0, 256, (240, 320, 3), dtype=np.uint8)
BOX = (250.0, 100.0, 60.0, 50.0)
#: Training pairs with every jitter and colour change off: a pair is then the plain crops of its frames.
NO_JITTER = AugmentConfig(
    template_shift=0.0, search_shift=0.0, template_scale=0.0, search_scale=0.0, blur=0.0, colour=0.0, grey=0.0
)


@pytest.fixture(params=["siamfc", "siamrpn"])
def bundle(request, tmp_path):
    """A synthetic bundle: siamfc searches a three-level scale pyramid, siamrpn a single crop."""
    make = {"siamfc": synthetic.siamfc_bundle, "siamrpn": synthetic.siamrpn_bundle}[request.param]
    return make(tmp_path / f"{request.param}.etb")


@pytest.fixture
def still_sequence(tmp_path):
    """A sequence folder of FRAME five times over, with BOX on every row of its ground truth."""
    folder = tmp_path / "still"
    folder.mkdir()
    for index in range(5):
        cv2.imwrite(str(folder / f"{index:04d}.png"), FRAME)
    (folder / "groundtruth.txt").write_text(f"{','.join(map(str, BOX))}\n" * 5)
    return folder


def runtime_crops(g: Geometry) -> tuple[np.ndarray, list[np.ndarray]]:
    """The template crop of BOX and its search crops at every pyramid level, by the runtime's functions."""
    state = TargetState.from_box(BOX)
    factors = geo.siamfc_scale_factors(g.num_scales, g.scale_step)
    return template_crop(FRAME, BOX, g), [search_crop(FRAME, state, g, scale=f) for f in factors]


def as_input(meta, crops: list[np.ndarray]) -> np.ndarray:
    """``crops`` in the network's NCHW float32 input layout, as the tracker writes them."""
    writer = InputWriter(meta)
    out = np.empty((len(crops), 3, *crops[0].shape[:2]), np.float32)
    for crop, dst in zip(crops, out):
        writer.write(crop, dst)
    return out


def test_tracker_and_pair_sampler_cut_the_runtime_crops(bundle, still_sequence):
    g = bundle.meta.geometry
    template, searches = runtime_crops(g)
    tracker = SiameseTracker(bundle.meta, OnnxRuntimeBackend(bundle))
    tracker.init(FRAME, BOX)
    assert np.array_equal(tracker.backend.template_input, as_input(bundle.meta, [template]))
    tracker.update(FRAME)  # searched around BOX, padded with FRAME's mean colour
    assert np.array_equal(tracker.backend.search_input, as_input(bundle.meta, searches))

    sequence = ImageSequence("still", sorted(still_sequence.glob("*.png")), [BOX] * 5)
    sampler = PairSampler([DataSource("still", [sequence])], g, PairConfig(negative=0.0, augment=NO_JITTER), seed=0)
    pair = sampler.pair(0)
    assert np.array_equal(pair.template, template)
    assert np.array_equal(pair.search, searches[g.num_scales // 2])  # the pyramid's middle level is scale 1


def test_comparison_crops_are_the_runtime_crops(bundle, still_sequence):
    template, searches = runtime_crops(bundle.meta.geometry)
    crops = real_crops(bundle.meta, still_sequence)
    assert np.array_equal(crops.z, as_input(bundle.meta, [template]))
    assert len(crops.x) == SEARCH_CROPS
    for x in crops.x:
        assert np.array_equal(x, as_input(bundle.meta, searches))


#: A 16 x 16 box has regions of sqrt(32 * 32) = 32 (exemplar) and 64 (search) frame pixels: with these sizes no
#: crop is resized, so every pixel is known.
SMALL = Geometry(exemplar_size=32, instance_size=64, stride=8, score_size=5)
CORNER_BOX = (0.0, 0.0, 16.0, 16.0)  # centre 7.5, 7.5


def corner_frame() -> np.ndarray:
    """40 x 30: blue 200, green 0 on the left half and 100 on the right, red the column index (mean 19.5)."""
    frame = np.zeros((30, 40, 3), np.uint8)
    frame[..., 0] = 200
    frame[:, 20:, 1] = 100
    frame[..., 2] = np.arange(40)
    return frame


#: The frame's mean colour, 19.5 truncated to 19 as pysot's uint8 buffer stores it.
MEAN = (200, 50, 19)


def test_a_template_crop_at_the_corner_is_padded_with_the_mean_colour():
    frame = corner_frame()
    crop = template_crop(frame, CORNER_BOX, SMALL)
    # side 32, centre 7.5: the corner is floor(7.5 - 33 / 2 + 0.5) = -9, so 9 rows and columns of padding.
    assert crop.shape == (32, 32, 3)
    assert (crop[:9] == MEAN).all() and (crop[:, :9] == MEAN).all()
    np.testing.assert_array_equal(crop[9:, 9:], frame[:23, :23])

    moved = template_crop(frame, CORNER_BOX, SMALL, shift=(3.0, 0.0))  # corner floor(10.5 - 16) = -6
    assert (moved[:, :6] == MEAN).all()
    np.testing.assert_array_equal(moved[9:, 6:], frame[:23, :26])


def test_a_search_crop_at_the_corner_is_padded_on_three_sides():
    frame = corner_frame()
    state = TargetState.from_box(CORNER_BOX)
    crop = search_crop(frame, state, SMALL)
    # side 64: the corner is floor(7.5 - 65 / 2 + 0.5) = -25; the 30 frame rows end at crop row 55.
    assert crop.shape == (64, 64, 3)
    assert (crop[:25] == MEAN).all() and (crop[:, :25] == MEAN).all() and (crop[55:] == MEAN).all()
    np.testing.assert_array_equal(crop[25:55, 25:], frame[:, :39])

    given = np.array([1, 2, 3], np.uint8)  # the tracker pads with its first frame's colour
    assert (search_crop(frame, state, SMALL, fill=given)[:25] == given).all()
    # Half the search region is the exemplar region, cut the same way and resized to the search size.
    half = search_crop(frame, state, SMALL, scale=0.5)
    np.testing.assert_array_equal(half, cv2.resize(template_crop(frame, CORNER_BOX, SMALL), (64, 64)))


def test_a_cropper_is_reused_and_must_fit():
    frame = corner_frame()
    cropper = geo.Cropper(SMALL.instance_size)
    assert search_crop(frame, TargetState.from_box(CORNER_BOX), SMALL, cropper=cropper) is cropper.out
    with pytest.raises(ValueError, match="64 pixels cannot cut a 32-pixel crop"):
        template_crop(frame, CORNER_BOX, SMALL, cropper=cropper)


def test_crop_pixels_round_half_to_even_and_never_to_zero():
    assert [crop_pixels(s) for s in (0.2, 2.5, 3.5, 126.6)] == [1, 2, 4, 127]


@pytest.mark.parametrize(
    "layout",
    [InputLayout(), InputLayout(color="RGB", scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))],
    ids=["bgr-raw", "rgb-imagenet"],
)
def test_input_writer_applies_the_layout_to_every_crop_size(layout):
    writer = InputWriter(SimpleNamespace(input=layout))
    # a template, a search crop and a strided (non-contiguous) crop, written twice so the reused buffers are exercised
    for crop in (FRAME[:127, :127], FRAME[:255, 10:265], FRAME[::2, ::2][:100, :100], FRAME[:127, 5:132]):
        rgb = crop[..., ::-1] if layout.color == "RGB" else crop
        mean, std = np.reshape(layout.mean, (3, 1, 1)), np.reshape(layout.std, (3, 1, 1))
        expected = (rgb.transpose(2, 0, 1).astype(np.float64) * layout.scale - mean) / std
        dst = np.empty((3, *crop.shape[:2]), np.float32)
        writer.write(crop, dst)
        np.testing.assert_allclose(dst, expected, rtol=1e-6, atol=1e-6)
