"""GOT-10k, LaSOT, TrackingNet and UAV123 readers on fixture datasets written here in each real layout: exact boxes
and absent flags, layout detection, UAV123's sub-sequence table, and one line naming the file for each bad input."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgetrack.distill.data.readers import FORMATS
from edgetrack.runtime.datasets import Dataset, Sequence, load_dataset
from edgetrack.runtime.errors import SourceError
from edgetrack.runtime.layouts import LAYOUTS, UAV123_RANGES, NumberedFrames, detect_layout

SIZE = (12, 16)  # h, w
NAN = [np.nan] * 4
BOXES = [[1, 2, 5, 6], [2, 3, 5, 6], [3, 4, 5.5, 6], [4, 5, 6, 7], [5, 6, 6, 7.25]]


def level(i: int) -> int:
    """Frame i is a flat grey of this level, so the frames that come back can be told apart."""
    return 10 + 20 * i


def write_frames(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), np.full((*SIZE, 3), level(i), np.uint8))


def write_rows(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(",".join(f"{v:g}" for v in row) + "\n" for row in rows))


def assert_frames_read(sequence: Sequence) -> None:
    frames = list(sequence.frames())
    assert [f.shape for f in frames] == [(*SIZE, 3)] * len(sequence)
    np.testing.assert_allclose([f.mean() for f in frames], [level(i) for i in range(len(sequence))], atol=2)  # JPEG


def by_name(dataset: Dataset) -> dict[str, Sequence]:
    assert dataset.skipped == []
    return {s.name: s for s in dataset.sequences}


def one_line_error(call, *parts: str) -> str:
    with pytest.raises(SourceError) as info:
        call()
    message = str(info.value).replace("\\", "/")
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


# GOT-10k ---------------------------------------------------------------------------------------------------------


def make_got10k(folder: Path, name: str, rows=BOXES, frames: int = 5, **labels) -> Path:
    """A GOT-10k sequence ``folder/name``; ``labels`` maps absence or cover to the values of its ``.label`` file."""
    sequence = folder / name
    write_frames(sequence, [f"{i + 1:08d}.jpg" for i in range(frames)])
    write_rows(sequence / "groundtruth.txt", rows)
    if len(rows) == frames:  # train and val folders have meta_info.ini; test folders only frames and first box
        (sequence / "meta_info.ini").write_text("[METAINFO]\nurl: https://youtu.be/x\nobject_class: bird\n")
    for label, values in labels.items():
        (sequence / f"{label}.label").write_text("".join(f"{v}\n" for v in values))
    return sequence


def got10k_root(root: Path) -> Path:
    make_got10k(root, "GOT-10k_Val_000001", absence=[0, 1, 0, 0, 0], cover=[8, 8, 0, 5, 1])
    make_got10k(root, "GOT-10k_Val_000002", rows=BOXES[:3], frames=3)
    make_got10k(root, "not_listed")
    (root / "list.txt").write_text("GOT-10k_Val_000002\nGOT-10k_Val_000001\n")
    return root


def test_got10k_list_boxes_and_absent_flags(tmp_path):
    sequences = by_name(load_dataset(got10k_root(tmp_path)))
    assert list(sequences) == ["GOT-10k_Val_000002", "GOT-10k_Val_000001"]  # list.txt's order; not_listed left out
    first = sequences["GOT-10k_Val_000001"]
    np.testing.assert_array_equal(first.groundtruth, BOXES)
    assert first.absent.tolist() == [False, True, True, False, False]  # absence 1, then cover 0
    assert first.scored and isinstance(first.frame_paths, NumberedFrames)
    assert [p.name for p in first.frame_paths] == [f"0000000{i}.jpg" for i in range(1, 6)]
    assert_frames_read(first)
    assert sequences["GOT-10k_Val_000002"].absent.tolist() == [False] * 3  # no label files: every frame present


def test_got10k_split_folder_is_found_and_two_splits_need_a_choice(tmp_path):
    got10k_root(tmp_path / "val")
    assert len(load_dataset(tmp_path).sequences) == 2
    assert len(load_dataset(tmp_path, layout="got10k").sequences) == 2
    make_got10k(tmp_path / "test", "GOT-10k_Test_000001", rows=BOXES[:1])
    (tmp_path / "test" / "list.txt").write_text("GOT-10k_Test_000001\n")
    one_line_error(lambda: load_dataset(tmp_path), "holds the splits test, val", "give one of them")


def test_got10k_test_sequence_has_only_its_first_box_and_is_not_scored(tmp_path):
    make_got10k(tmp_path, "GOT-10k_Test_000001", rows=BOXES[:1])
    (tmp_path / "list.txt").write_text("GOT-10k_Test_000001\n")
    (sequence,) = load_dataset(tmp_path).sequences
    assert not sequence.scored and len(sequence) == 5 and len(sequence.frame_paths) == 5
    np.testing.assert_array_equal(sequence.groundtruth, [BOXES[0]] + [NAN] * 4)
    assert_frames_read(sequence)


def got10k_without_list(root):
    (root / "list.txt").unlink()


def got10k_missing_folder(root):
    (root / "list.txt").write_text("GOT-10k_Val_000001\nGOT-10k_Val_000009\n")


def got10k_short_groundtruth(root):
    write_rows(root / "GOT-10k_Val_000001" / "groundtruth.txt", BOXES[:4])


def got10k_long_absence(root):
    (root / "GOT-10k_Val_000001" / "absence.label").write_text("0\n" * 6)


def got10k_short_cover(root):
    (root / "GOT-10k_Val_000001" / "cover.label").write_text("8\n8\n")


@pytest.mark.parametrize(
    "damage, parts",
    [
        (got10k_without_list, ["list.txt", "expected"]),
        (got10k_missing_folder, ["GOT-10k_Val_000009 not found"]),
        (got10k_short_groundtruth, ["GOT-10k_Val_000001/groundtruth.txt has 4 rows but there are 5 frames"]),
        (got10k_long_absence, ["GOT-10k_Val_000001/absence.label has 6 flags for 5 frames"]),
        (got10k_short_cover, ["GOT-10k_Val_000001/cover.label has 2 flags for 5 frames"]),
    ],
)
def test_got10k_bad_input_is_one_line_naming_the_file(tmp_path, damage, parts):
    damage(got10k_root(tmp_path))
    one_line_error(lambda: load_dataset(tmp_path, layout="got10k"), *parts)


# LaSOT -----------------------------------------------------------------------------------------------------------


def make_lasot(root: Path, category: str, n: int, rows=BOXES, **flags) -> Path:
    folder = root / category / f"{category}-{n}"
    write_frames(folder / "img", [f"{i + 1:08d}.jpg" for i in range(len(rows))])
    write_rows(folder / "groundtruth.txt", rows)
    for flag, values in flags.items():
        (folder / f"{flag}.txt").write_text(",".join(map(str, values)) + "\n")
    return folder


def lasot_root(root: Path) -> Path:
    make_lasot(root, "airplane", 1, full_occlusion=[0, 1, 0, 0, 0], out_of_view=[0, 0, 0, 1, 1])
    make_lasot(root, "airplane", 13, rows=BOXES[:2])
    make_lasot(root, "bird", 2, rows=BOXES[:3])
    return root


def test_lasot_occlusion_or_out_of_view_is_absent(tmp_path):
    sequences = by_name(load_dataset(lasot_root(tmp_path)))
    assert list(sequences) == ["airplane-1", "airplane-13", "bird-2"]
    airplane = sequences["airplane-1"]
    np.testing.assert_array_equal(airplane.groundtruth, BOXES)
    assert airplane.absent.tolist() == [False, True, False, True, True]
    assert airplane.frame_paths[0] == tmp_path / "airplane" / "airplane-1" / "img" / "00000001.jpg"
    assert_frames_read(airplane)
    assert sequences["bird-2"].absent.tolist() == [False] * 3


def test_lasot_single_class_folder(tmp_path):
    lasot_root(tmp_path)
    assert detect_layout(tmp_path / "airplane") == "lasot"
    assert [s.name for s in load_dataset(tmp_path / "airplane").sequences] == ["airplane-1", "airplane-13"]


def test_lasot_bad_input_is_one_line_naming_the_file(tmp_path):
    folder = make_lasot(lasot_root(tmp_path), "cat", 3, out_of_view=[0, 0, 1])
    one_line_error(lambda: load_dataset(tmp_path), "cat-3/out_of_view.txt has 3 flags for 5 frames")
    (folder / "out_of_view.txt").write_text("0,0,1,0,x\n")
    one_line_error(lambda: load_dataset(tmp_path), "cat-3/out_of_view.txt line 1", "'x'")
    (folder / "out_of_view.txt").unlink()
    write_rows(folder / "groundtruth.txt", BOXES[:1])  # a first row alone is only accepted for test splits
    one_line_error(lambda: load_dataset(tmp_path), "cat-3/groundtruth.txt has 1 rows but there are 5 frames")
    (folder / "groundtruth.txt").unlink()
    one_line_error(lambda: load_dataset(tmp_path), "cat-3/groundtruth.txt")


# TrackingNet -----------------------------------------------------------------------------------------------------


def make_trackingnet(chunk: Path, video: str, rows, frames: int | None = None) -> None:
    write_rows(chunk / "anno" / f"{video}.txt", rows)
    write_frames(chunk / "frames" / video, [f"{i}.jpg" for i in range(len(rows) if frames is None else frames)])


def test_trackingnet_frames_and_anno_in_natural_order(tmp_path):
    rows = [[i, i + 1, 5, 6] for i in range(11)]
    make_trackingnet(tmp_path, "video_b", rows)
    make_trackingnet(tmp_path, "video_a", BOXES)
    sequences = by_name(load_dataset(tmp_path))
    assert list(sequences) == ["video_a", "video_b"]
    video_b = sequences["video_b"]
    np.testing.assert_array_equal(video_b.groundtruth, rows)
    assert [p.name for p in video_b.frame_paths][8:] == ["8.jpg", "9.jpg", "10.jpg"]  # 10 after 9, not after 1
    assert_frames_read(video_b)


def test_trackingnet_chunks_and_a_test_video_with_its_first_box_only(tmp_path):
    make_trackingnet(tmp_path / "TRAIN_0", "train_video", BOXES)
    make_trackingnet(tmp_path / "TEST", "test_video", BOXES[:1], frames=4)
    assert detect_layout(tmp_path) == "trackingnet"
    sequences = by_name(load_dataset(tmp_path))
    assert list(sequences) == ["test_video", "train_video"]
    test_video = sequences["test_video"]
    assert not test_video.scored and sequences["train_video"].scored
    np.testing.assert_array_equal(test_video.groundtruth, [BOXES[0]] + [NAN] * 3)


def test_trackingnet_bad_input_is_one_line_naming_the_file(tmp_path):
    make_trackingnet(tmp_path, "video_a", BOXES)
    write_frames(tmp_path / "frames" / "video_c", ["0.jpg", "1.jpg"])
    one_line_error(lambda: load_dataset(tmp_path), "missing annotation", "anno/video_c.txt")
    write_rows(tmp_path / "anno" / "video_c.txt", BOXES[:3])
    one_line_error(lambda: load_dataset(tmp_path), "anno/video_c.txt has 3 rows but there are 2 frames")


def test_trackingnet_chunks_with_one_video_name_twice_are_an_error(tmp_path):
    make_trackingnet(tmp_path / "TRAIN_0", "video", BOXES)
    make_trackingnet(tmp_path / "TRAIN_1", "video", BOXES)
    one_line_error(lambda: load_dataset(tmp_path), "two sequences are named video", "TRAIN_0/frames", "TRAIN_1/frames")


# UAV123 ----------------------------------------------------------------------------------------------------------

# The official table (UAV123 toolkit, configSeqs.m): bird1's frames 1-253, 775-1477 and 1573-2437 are three sequences.
BIRD1 = {"bird1_1": (1, 253), "bird1_2": (775, 1477), "bird1_3": (1573, 2437)}


def uav123_root(root: Path, bird_frames: int = 2437) -> Path:
    folder = root / "data_seq" / "UAV123" / "bird1"
    folder.mkdir(parents=True)
    for i in range(1, bird_frames + 1):  # only listed, never read: empty files keep the fixture fast
        (folder / f"{i:06d}.jpg").touch()
    for name, (first, last) in BIRD1.items():
        write_rows(root / "anno" / "UAV123" / f"{name}.txt", [[first, i, 10, 10] for i in range(first, last + 1)])
    write_frames(root / "data_seq" / "UAV123" / "bike3", [f"{i + 1:06d}.jpg" for i in range(5)])
    write_rows(root / "anno" / "UAV123" / "bike3.txt", [BOXES[0], NAN, BOXES[2], NAN, BOXES[4]])
    return root


def test_uav123_sub_sequences_are_the_official_frame_ranges(tmp_path):
    assert {name: UAV123_RANGES[name] for name in BIRD1} == {name: ("bird1", *r) for name, r in BIRD1.items()}
    sequences = by_name(load_dataset(uav123_root(tmp_path)))
    assert list(sequences) == ["bike3", "bird1_1", "bird1_2", "bird1_3"]
    folder = tmp_path / "data_seq" / "UAV123" / "bird1"
    bird1_2 = sequences["bird1_2"]
    assert len(bird1_2) == 1477 - 775 + 1 == 703
    assert list(bird1_2.frame_paths) == [folder / f"{i:06d}.jpg" for i in range(775, 1478)]
    np.testing.assert_array_equal(bird1_2.groundtruth[[0, -1]], [[775, 775, 10, 10], [775, 1477, 10, 10]])
    assert [sequences[n].frame_paths[0].name for n in BIRD1] == ["000001.jpg", "000775.jpg", "001573.jpg"]
    assert [sequences[n].frame_paths[-1].name for n in BIRD1] == ["000253.jpg", "001477.jpg", "002437.jpg"]
    bike3 = sequences["bike3"]  # a sequence outside the table is its folder whole
    assert bike3.absent.tolist() == [False, True, False, True, False]  # NaN rows
    assert_frames_read(bike3)


def test_uav123_bad_input_is_one_line_naming_the_file(tmp_path):
    uav123_root(tmp_path, bird_frames=2000)
    one_line_error(lambda: load_dataset(tmp_path), "bird1_3 is frames 1573-2437", "data_seq/UAV123/bird1")
    (tmp_path / "anno" / "UAV123" / "bird1_3.txt").unlink()
    write_rows(tmp_path / "anno" / "UAV123" / "bike3.txt", BOXES[:4])
    one_line_error(lambda: load_dataset(tmp_path), "anno/UAV123/bike3.txt has 4 rows but there are 5 frames")
    write_rows(tmp_path / "anno" / "UAV123" / "car9.txt", BOXES)
    write_rows(tmp_path / "anno" / "UAV123" / "bike3.txt", BOXES)
    one_line_error(lambda: load_dataset(tmp_path), "no frames", "data_seq/UAV123/car9")


# Detection, layout names, training -------------------------------------------------------------------------------

MAKERS = {"got10k": got10k_root, "lasot": lasot_root, "uav123": uav123_root}


@pytest.mark.parametrize("layout", MAKERS)
def test_layout_is_detected_and_can_be_named(tmp_path, layout):
    MAKERS[layout](tmp_path)
    assert detect_layout(tmp_path) == layout
    assert [s.name for s in load_dataset(tmp_path, layout=layout).sequences] == [s.name for s in load_dataset(tmp_path).sequences]


def test_layout_names_and_what_auto_looked_for(tmp_path):
    assert LAYOUTS == ("auto", "otb", "got10k", "lasot", "trackingnet", "uav123")
    (tmp_path / "notes").mkdir()
    one_line_error(lambda: load_dataset(tmp_path), "not a dataset", "GOT-10k root (list.txt", "LaSOT", "TrackingNet", "UAV123")
    one_line_error(lambda: load_dataset(tmp_path, layout="vot"), "unknown dataset layout 'vot'", "auto, otb, got10k")
    one_line_error(lambda: load_dataset(tmp_path, layout="got10k"), "no list.txt in GOT-10k root")
    one_line_error(lambda: load_dataset(tmp_path, layout="lasot"), "LaSOT root", "holds no sequences")
    one_line_error(lambda: load_dataset(tmp_path, tmp_path / "gt.txt", layout="lasot"), "carries its own annotations")


def test_a_vot_root_with_its_list_txt_stays_otb(tmp_path):
    for name in ("bag", "ball"):
        write_frames(tmp_path / name / "color", [f"{i + 1:08d}.jpg" for i in range(3)])
        write_rows(tmp_path / name / "groundtruth.txt", BOXES[:3])
    (tmp_path / "list.txt").write_text("bag\nball\n")
    assert detect_layout(tmp_path) == "otb"
    assert [s.name for s in load_dataset(tmp_path).sequences] == ["bag", "ball"]
    (tmp_path / "bag" / "absence.label").write_text("0\n0\n0\n")  # a file only GOT-10k has
    assert detect_layout(tmp_path) == "got10k"


def test_training_reads_the_same_layouts(tmp_path):
    uav123_root(tmp_path / "uav")
    uav = {s.name: s for s in FORMATS["uav123"](tmp_path / "uav").sequences}
    assert list(uav) == ["uav123/bike3", "uav123/bird1_1", "uav123/bird1_2", "uav123/bird1_3"]
    assert uav["uav123/bike3"].visible.tolist() == [True, False, True, False, True]
    assert uav["uav123/bird1_2"].frame_paths[0].name == "000775.jpg"

    make_trackingnet(tmp_path / "tn" / "TRAIN_0", "video", BOXES)
    make_trackingnet(tmp_path / "tn" / "TEST", "test_video", BOXES[:1], frames=4)
    assert [s.name for s in FORMATS["trackingnet"](tmp_path / "tn").sequences] == ["trackingnet/TRAIN_0/video"]
    test_split = FORMATS["trackingnet"](tmp_path / "tn", chunks=["TEST", "TRAIN_0"])
    assert test_split.skipped == ["trackingnet/TEST/test_video: only the first frame has a box (a test split), so it gives no training pair"]
