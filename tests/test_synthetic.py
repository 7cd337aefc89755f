"""The synthetic world: seeded, order-free frames whose boxes and visibility flags match what is drawn."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from edgetrack.distill.data.sequence import TrainingSequence
from edgetrack.distill.data.synthetic import (
    FLAT_BACKGROUND,
    WorldConfig,
    synthetic_sequence,
    synthetic_world,
    write_sequence,
)
from edgetrack.runtime.datasets import load_dataset

#: The target alone on a flat background: every pixel that is not FLAT_BACKGROUND belongs to it.
BARE = WorldConfig(distractors=0, occlusion=False, blur=False, illumination=False, background=False)


def drawn(frame: np.ndarray) -> np.ndarray:
    return np.any(frame != FLAT_BACKGROUND, axis=2)


def inside(box, config: WorldConfig) -> bool:
    x, y, w, h = box
    return x > 0 and y > 0 and x + w < config.width and y + h < config.height


def test_same_seed_and_index_give_the_same_sequence_and_others_differ():
    a, b = synthetic_sequence(7, 3), synthetic_sequence(7, 3)
    assert a.name == b.name == "synthetic-7-3"
    for i in (0, 17, 59):
        assert np.array_equal(a.frame(i), b.frame(i))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.true_boxes, b.true_boxes)
    np.testing.assert_array_equal(a.visible, b.visible)
    for other in (synthetic_sequence(7, 4), synthetic_sequence(8, 3)):
        assert not np.array_equal(a.frame(0), other.frame(0))
        assert not np.allclose(a.true_boxes, other.true_boxes)


def test_a_frame_is_the_same_whether_drawn_alone_or_after_the_others():
    direct = synthetic_sequence(1, 2).frame(40)
    walked = synthetic_sequence(1, 2)
    for i in range(41):
        last = walked.frame(i)
    assert np.array_equal(direct, last)
    assert np.array_equal(walked.frame(-1), walked.frame(59))
    with pytest.raises(IndexError):
        walked.frame(60)


def test_switching_effects_off_leaves_the_target_where_it_was():
    for index in range(3):
        np.testing.assert_array_equal(synthetic_sequence(5, index).true_boxes, synthetic_sequence(5, index, BARE).true_boxes)


@pytest.mark.parametrize("index", range(6))
def test_true_box_is_the_box_of_the_drawn_target(index):
    sequence = synthetic_sequence(5, index, BARE)
    for i in range(0, len(sequence), 6):
        ys, xs = np.nonzero(drawn(sequence.frame(i)))
        x, y, w, h = sequence.true_boxes[i]
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], [x, y, x + w, y + h], atol=1.1)


def test_the_target_moves_and_changes_scale_aspect_and_angle():
    config = replace(BARE, rotation=False)
    for index in range(5):
        boxes = synthetic_sequence(11, index, config).true_boxes
        whole = boxes[[inside(b, config) for b in boxes]]
        assert len(whole) > 30
        area, aspect = whole[:, 2] * whole[:, 3], whole[:, 2] / whole[:, 3]
        assert 1.1 < np.sqrt(area.max() / area.min()) <= config.scale_change + 0.02
        assert 1.05 < aspect.max() / aspect.min() <= (1 + config.aspect_change) ** 2 + 0.02
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        assert np.linalg.norm(np.diff(centres, axis=0), axis=1).sum() > 40
    assert not synthetic_sequence(11, 0, config).target.angle.any()
    for index in range(5):
        angle = synthetic_sequence(11, index).target.angle
        assert 5 < np.ptp(angle) and np.abs(angle).max() <= 30
        assert np.abs(np.diff(angle)).max() < 5  # smooth


def test_visible_is_false_exactly_where_the_occluder_hides_most_of_the_target():
    config = replace(BARE, occlusion=True)
    hidden = 0
    for index in range(4):
        occluded = synthetic_sequence(2, index, config)
        clear = synthetic_sequence(2, index, BARE)
        assert clear.visible.all()
        for i in range(len(occluded)):
            if not inside(occluded.true_boxes[i], config):
                continue
            before, after = clear.frame(i), occluded.frame(i)
            target = drawn(before)
            covered = np.count_nonzero(target & np.any(before != after, axis=2)) / np.count_nonzero(target)
            if abs(covered - 0.5) > 0.1:
                assert occluded.visible[i] == (covered < 0.5), (index, i, covered)
            hidden += not occluded.visible[i]
        assert occluded.visible[0]
        assert np.isnan(occluded.boxes[~occluded.visible]).all()
        np.testing.assert_array_equal(occluded.boxes[occluded.visible], occluded.true_boxes[occluded.visible])
    assert hidden >= 5


def test_visible_is_false_where_the_target_is_mostly_out_of_the_frame():
    # Centres stay inside the frame, so only a large target can be more than half out of it.
    config = replace(BARE, target_size=(0.6, 0.7))
    out = 0
    for index in range(12):
        sequence = synthetic_sequence(3, index, config)
        for i in range(len(sequence)):
            share = np.count_nonzero(drawn(sequence.frame(i))) / cv2.contourArea(sequence.target.polygons[i].astype(np.float32))
            if abs(share - 0.5) > 0.05:
                assert sequence.visible[i] == (share > 0.5), (index, i, share)
            out += not sequence.visible[i]
    assert out > 0


def test_distractors_share_the_targets_shape_and_look_like_it():
    closer = []
    for index in range(10):
        sequence = synthetic_sequence(3, index)
        assert len(sequence.distractors) == 2
        target = sequence.target.texture.reshape(-1, 3).mean(0)
        scene = np.linalg.norm(sequence.background.reshape(-1, 3).mean(0) - target)
        for distractor in sequence.distractors:
            assert distractor.shape == sequence.target.shape
            assert 0.5 < distractor.half.max() / sequence.target.half.max() < 2
            closer.append(np.linalg.norm(distractor.texture.reshape(-1, 3).mean(0) - target) < scene)
    assert np.mean(closer) >= 0.9


def test_synthetic_world_holds_the_numbered_sequences():
    world = synthetic_world(9, 4, WorldConfig(length=10, distractors=0))
    assert [s.name for s in world.sequences] == [f"synthetic-9-{i}" for i in range(4)] and not world.skipped
    np.testing.assert_array_equal(
        world.sequences[2].true_boxes, synthetic_sequence(9, 2, WorldConfig(length=10, distractors=0)).true_boxes
    )
    assert all(len(s) == 10 and s.labelled for s in world.sequences)
    with pytest.raises(ValueError, match="length"):
        WorldConfig(length=1)


def test_write_sequence_round_trips_through_the_otb_reader(tmp_path):
    sequence = synthetic_sequence(4, 1, WorldConfig(length=12))
    folder = write_sequence(sequence, tmp_path / "seq")
    assert folder == tmp_path / "seq" and (folder / "img" / "0001.jpg").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["seq"]  # no staging folder left behind
    [loaded] = load_dataset(folder).sequences
    assert len(loaded) == 12
    np.testing.assert_allclose(loaded.groundtruth, sequence.true_boxes, atol=0.0051)
    for i, image in enumerate(loaded.frames()):
        assert np.abs(image.astype(int) - sequence.frame(i)).mean() < 3

    with pytest.raises(FileExistsError):
        write_sequence(sequence, folder)
    assert [p.name for p in tmp_path.iterdir()] == ["seq"]


def test_write_sequence_refuses_frames_without_a_box(tmp_path):
    class Unlabelled(TrainingSequence):
        name, boxes, visible = "blank", np.full((2, 4), np.nan), np.zeros(2, bool)

        def frame(self, index):
            return np.zeros((8, 8, 3), np.uint8)

    with pytest.raises(ValueError, match="every frame"):
        write_sequence(Unlabelled(), tmp_path / "blank")
    assert not any(tmp_path.iterdir())
