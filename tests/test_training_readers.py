"""Training-data readers on fixture datasets written here in each real layout, and on every kind of bad input."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgetrack.distill.data.readers import (
    FORMATS,
    read_coco,
    read_got10k,
    read_imagenet_vid,
    read_lasot,
    read_trackingnet,
    read_training_data,
    read_uav123,
)
from edgetrack.runtime.errors import SourceError
from edgetrack.runtime.layouts import NumberedFrames

H, W = 48, 64
# Frame i is a flat image of grey level 10 + 20 * i, so the order in which frames come back can be checked.
BOXES = [[1, 2, 10, 12], [3.5, 4, 10.25, 12], [5, 6, 11, 13]]


def level(i: int) -> int:
    return 10 + 20 * i


def write_frames(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), np.full((H, W, 3), level(i), np.uint8))


def write_rows(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(",".join(f"{v:g}" for v in row) + "\n" for row in rows))


def assert_frame(sequence, index: int, expected_level: int) -> None:
    image = sequence.frame(index)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert abs(float(image.mean()) - expected_level) < 3  # JPEG


def assert_boxes(actual, expected) -> None:
    np.testing.assert_array_equal(actual, np.array(expected, dtype=np.float64))


def by_name(training_set) -> dict:
    return {s.name: s for s in training_set.sequences}


# GOT-10k ---------------------------------------------------------------------------------------------------------


def make_got10k(root: Path, name: str, boxes=BOXES, frames: int | None = None, **labels) -> Path:
    """A GOT-10k train sequence; ``labels`` maps a label file (absence, cover) to its per-frame values."""
    folder = root / "train" / name
    write_frames(folder, [f"{i + 1:08d}.jpg" for i in range(len(boxes) if frames is None else frames)])
    write_rows(folder / "groundtruth.txt", boxes)
    for label, values in labels.items():
        (folder / f"{label}.label").write_text("".join(f"{v}\n" for v in values))
    return folder


def test_got10k_boxes_visibility_and_frames(tmp_path):
    make_got10k(tmp_path, "GOT-10k_Train_000001", absence=[0, 1, 0], cover=[8, 8, 5])
    make_got10k(tmp_path, "GOT-10k_Train_000002", absence=[0, 0, 0], cover=[8, 3, 0])
    make_got10k(tmp_path, "not_listed")
    (tmp_path / "train" / "list.txt").write_text("GOT-10k_Train_000001\nGOT-10k_Train_000002\n")

    data = read_got10k(tmp_path)
    assert data.skipped == []
    first, second = data.sequences
    assert (first.name, second.name) == ("got10k/GOT-10k_Train_000001", "got10k/GOT-10k_Train_000002")
    assert_boxes(first.boxes, [BOXES[0], [np.nan] * 4, BOXES[2]])
    assert first.visible.tolist() == [True, False, True]  # absent
    assert second.visible.tolist() == [True, True, False]  # fully covered
    assert_boxes(second.boxes[:2], BOXES[:2])
    assert isinstance(first.frame_paths, NumberedFrames) and len(first) == 3
    for i in range(3):
        assert_frame(first, i, level(i))


def test_got10k_without_list_takes_every_subfolder_in_natural_order(tmp_path):
    for name in ("seq10", "seq2"):
        make_got10k(tmp_path, name)
    assert [s.name for s in read_got10k(tmp_path).sequences] == ["got10k/seq2", "got10k/seq10"]


def test_got10k_other_split(tmp_path):
    make_got10k(tmp_path, "a")
    (tmp_path / "train").rename(tmp_path / "val")
    assert len(read_got10k(tmp_path, "val").sequences) == 1


def corrupt_line(folder):
    (folder / "groundtruth.txt").write_text("1,2,10,12\n1,2,x,12\n5,6,11,13\n")


def wrong_count(folder):
    (folder / "groundtruth.txt").write_text("1,2,10,12\n1,2,12\n5,6,11,13\n")


def no_frames(folder):
    for frame in folder.glob("*.jpg"):
        frame.unlink()


def extra_frame(folder):
    write_frames(folder, [f"{i + 1:08d}.jpg" for i in range(4)])


def all_absent(folder):
    (folder / "absence.label").write_text("1\n1\n1\n")


def corrupt_flags(folder):
    (folder / "absence.label").write_text("0\nyes\n0\n")


def short_flags(folder):
    (folder / "cover.label").write_text("8\n8\n")


def empty_groundtruth(folder):
    (folder / "groundtruth.txt").write_text("")


def no_folder(folder):
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (corrupt_line, "bad/groundtruth.txt line 2"),
        (wrong_count, "bad/groundtruth.txt line 2"),
        (no_frames, "no frames"),
        (extra_frame, "4 frames"),
        (all_absent, "no frame has a visible box"),
        (corrupt_flags, "bad/absence.label line 2"),
        (short_flags, "bad/cover.label has 2 flags for 3 frames"),
        (empty_groundtruth, "bad/groundtruth.txt is empty"),
        (no_folder, "train/bad not found"),
    ],
)
def test_got10k_bad_sequence_is_skipped_with_a_reason(tmp_path, damage, reason):
    make_got10k(tmp_path, "good")
    damage(make_got10k(tmp_path, "bad"))
    (tmp_path / "train" / "list.txt").write_text("good\nbad\n")
    data = read_got10k(tmp_path)
    assert [s.name for s in data.sequences] == ["got10k/good"]
    assert len(data.skipped) == 1
    assert data.skipped[0].startswith("got10k/bad: ") and reason in data.skipped[0].replace("\\", "/")


def test_no_usable_sequence_is_an_error_with_the_first_reason(tmp_path):
    corrupt_line(make_got10k(tmp_path, "bad"))
    with pytest.raises(SourceError, match=r"no usable sequence \(1 skipped; first: got10k/bad: .*line 2"):
        read_got10k(tmp_path)


# Missing or foreign roots ----------------------------------------------------------------------------------------

READERS = [read_got10k, read_lasot, read_trackingnet, read_uav123, read_imagenet_vid, read_coco]


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_missing_root_names_the_path(tmp_path, reader):
    missing = tmp_path / "nowhere"
    with pytest.raises(SourceError, match="not found") as error:
        reader(missing)
    assert str(missing) in str(error.value)


@pytest.mark.parametrize("reader", READERS[:5], ids=lambda r: r.__name__)
def test_root_without_the_layout_says_what_was_expected(tmp_path, reader):
    (tmp_path / "train").mkdir()
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(SourceError, match="expected") as error:
        reader(tmp_path)
    assert str(tmp_path) in str(error.value)


# LaSOT -----------------------------------------------------------------------------------------------------------


def make_lasot(root: Path, category: str, n: int, boxes=BOXES, names=None, **flags) -> Path:
    folder = root / category / f"{category}-{n}"
    write_frames(folder / "img", names or [f"{i + 1:08d}.jpg" for i in range(len(boxes))])
    write_rows(folder / "groundtruth.txt", boxes)
    for flag, values in flags.items():
        (folder / f"{flag}.txt").write_text(",".join(map(str, values)) + "\n")
    return folder


def test_lasot_occlusion_and_out_of_view_are_invisible(tmp_path):
    boxes = BOXES + [[7, 8, 9, 10]]
    make_lasot(tmp_path, "airplane", 1, boxes, full_occlusion=[0, 1, 0, 0], out_of_view=[0, 0, 1, 0])
    make_lasot(tmp_path, "bird", 2)
    data = read_lasot(tmp_path)
    assert data.skipped == []
    sequences = by_name(data)
    assert list(sequences) == ["lasot/airplane-1", "lasot/bird-2"]
    airplane = sequences["lasot/airplane-1"]
    assert airplane.visible.tolist() == [True, False, False, True]
    assert_boxes(airplane.boxes, [boxes[0], [np.nan] * 4, [np.nan] * 4, boxes[3]])
    assert sequences["lasot/bird-2"].visible.all()  # no flag files: every frame visible
    assert_frame(airplane, 3, level(3))


def test_frames_not_numbered_contiguously_come_in_natural_order(tmp_path):
    make_lasot(tmp_path, "cat", 1, names=["1.jpg", "2.jpg", "10.jpg"])
    (sequence,) = read_lasot(tmp_path).sequences
    assert [p.name for p in sequence.frame_paths] == ["1.jpg", "2.jpg", "10.jpg"]
    assert_frame(sequence, 2, level(2))


def test_lasot_corrupt_flag_file_skips_the_sequence(tmp_path):
    make_lasot(tmp_path, "cat", 1)
    make_lasot(tmp_path, "cat", 2, out_of_view=["0", "1", "?"])
    data = read_lasot(tmp_path)
    assert [s.name for s in data.sequences] == ["lasot/cat-1"]
    assert len(data.skipped) == 1 and "out_of_view.txt line 1" in data.skipped[0]


# TrackingNet -----------------------------------------------------------------------------------------------------


def make_trackingnet(root: Path, chunk: str, video: str, boxes, frames=True) -> None:
    write_rows(root / chunk / "anno" / f"{video}.txt", boxes)
    if frames:
        write_frames(root / chunk / "frames" / video, [f"{i}.jpg" for i in range(len(boxes))])


def test_trackingnet_chunks_and_natural_frame_order(tmp_path):
    long_boxes = [[i, i + 1, 5, 6] for i in range(12)]
    make_trackingnet(tmp_path, "TRAIN_0", "video_a", long_boxes)
    make_trackingnet(tmp_path, "TRAIN_1", "video_b", BOXES[:2])
    make_trackingnet(tmp_path, "TRAIN_1", "no_frames", BOXES[:2], frames=False)

    data = read_trackingnet(tmp_path)
    sequences = by_name(data)
    assert list(sequences) == ["trackingnet/TRAIN_0/video_a", "trackingnet/TRAIN_1/video_b"]
    assert len(data.skipped) == 1 and data.skipped[0].startswith("trackingnet/TRAIN_1/no_frames: no frames")
    video_a = sequences["trackingnet/TRAIN_0/video_a"]
    assert_boxes(video_a.boxes, long_boxes)
    assert video_a.frame_paths[10].name == "10.jpg"  # 10 after 9, not after 1
    assert_frame(video_a, 10, level(10))

    assert [s.name for s in read_trackingnet(tmp_path, chunks=["TRAIN_1"]).sequences] == ["trackingnet/TRAIN_1/video_b"]
    assert len(read_trackingnet(tmp_path, chunks="TRAIN_0").sequences) == 1
    with pytest.raises(SourceError, match="TRAIN_7"):
        read_trackingnet(tmp_path, chunks=["TRAIN_7"])


# ILSVRC-VID ------------------------------------------------------------------------------------------------------


def vid_xml(*objects) -> str:
    """``objects`` are (trackid, xmin, ymin, xmax, ymax)."""
    body = "".join(
        f"<object><trackid>{t}</trackid><name>n01503061</name><bndbox><xmax>{x1}</xmax><xmin>{x0}</xmin>"
        f"<ymax>{y1}</ymax><ymin>{y0}</ymin></bndbox><occluded>0</occluded></object>"
        for t, x0, y0, x1, y1 in objects
    )
    return f"<annotation><folder>x</folder><size><width>{W}</width><height>{H}</height></size>{body}</annotation>"


def make_vid(root: Path, split: str, snippet: str, xmls) -> None:
    write_frames(root / "Data" / "VID" / split / snippet, [f"{i:06d}.JPEG" for i in range(len(xmls))])
    annotations = root / "Annotations" / "VID" / split / snippet
    annotations.mkdir(parents=True)
    for i, xml in enumerate(xmls):
        if xml is not None:
            (annotations / f"{i:06d}.xml").write_text(xml)


def test_vid_one_sequence_per_trackid_train_and_val(tmp_path):
    snippet = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    xmls = [
        vid_xml((0, 10, 5, 30, 25), (1, 1, 2, 11, 14)),
        vid_xml((0, 12, 6, 32, 26)),
        vid_xml((1, 2, 3, 12, 15), (0, 14, 7, 34, 27)),
    ]
    make_vid(tmp_path, "train", snippet, xmls)
    make_vid(tmp_path, "val", "ILSVRC2015_val_00000000", [vid_xml((3, 0, 0, 8, 8)), vid_xml((3, 1, 1, 9, 9))])

    data = read_imagenet_vid(tmp_path)
    assert data.skipped == []
    sequences = by_name(data)
    assert list(sequences) == [f"vid/{snippet}/0", f"vid/{snippet}/1"]
    track0, track1 = sequences.values()
    assert_boxes(track0.boxes, [[10, 5, 20, 20], [12, 6, 20, 20], [14, 7, 20, 20]])
    assert track1.visible.tolist() == [True, False, True]  # trackid 1 absent from frame 1
    assert_boxes(track1.boxes, [[1, 2, 10, 12], [np.nan] * 4, [2, 3, 10, 12]])
    assert_frame(track1, 2, level(2))

    make_vid(tmp_path, "val", "ILSVRC2015_val_00000001", [vid_xml(), vid_xml()])
    val = read_imagenet_vid(tmp_path, "val")
    assert [(s.name, len(s)) for s in val.sequences] == [("vid/ILSVRC2015_val_00000000/3", 2)]
    assert len(val.skipped) == 1 and val.skipped[0].startswith("vid/ILSVRC2015_val_00000001: no object is annotated")


def test_vid_malformed_or_missing_xml_makes_its_frame_absent_with_a_reason(tmp_path):
    good = vid_xml((0, 10, 5, 30, 25))
    make_vid(
        tmp_path, "val", "snippet", [good, "<annotation><object><trackid>0", good.replace("<xmin>10</xmin>", ""), None, good]
    )
    data = read_imagenet_vid(tmp_path, "val")
    (track,) = data.sequences
    assert track.visible.tolist() == [True, False, False, False, True]
    reasons = [r.replace("\\", "/") for r in data.skipped]
    assert len(reasons) == 3
    assert "malformed XML" in reasons[0] and "snippet/000001.xml" in reasons[0]
    assert "bndbox" in reasons[1] and "snippet/000002.xml" in reasons[1]
    assert "no annotation" in reasons[2] and "snippet/000003.xml" in reasons[2]


# COCO ------------------------------------------------------------------------------------------------------------

COCO = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "width": W, "height": H},
        {"id": 2, "file_name": "b.jpg", "width": W, "height": H},
        {"file_name": "no_id.jpg"},
    ],
    "annotations": [
        {"id": 11, "image_id": 1, "bbox": [1, 2, 10, 20], "iscrowd": 0, "category_id": 1},
        {"id": 12, "image_id": 1, "bbox": [0, 0, 30, 30], "iscrowd": 1, "category_id": 1},
        {"id": 13, "image_id": 2, "bbox": [0, 0, 0, 5], "iscrowd": 0, "category_id": 1},
        {"id": 14, "image_id": 99, "bbox": [1, 1, 5, 5], "iscrowd": 0, "category_id": 1},
        {"id": 15, "image_id": 2, "bbox": "oops", "iscrowd": 0, "category_id": 1},
        {"id": 16, "image_id": 2, "bbox": [5.5, 5, 8, 9], "category_id": 2},
        {"id": 17, "image_id": 2, "bbox": [float("nan"), 5, 8, 9], "iscrowd": 0, "category_id": 2},
    ],
}


def write_coco(annotations: Path, images: Path, content=COCO) -> Path:
    write_frames(images, ["a.jpg", "b.jpg"])
    annotations.parent.mkdir(parents=True, exist_ok=True)
    annotations.write_text(json.dumps(content))
    return annotations


def test_coco_one_frame_sequences_without_crowd(tmp_path):
    data = read_coco(write_coco(tmp_path / "ann.json", tmp_path / "pictures"), tmp_path / "pictures")
    sequences = by_name(data)
    assert list(sequences) == ["coco/a/11", "coco/b/16"]  # 12 is crowd
    assert_boxes(sequences["coco/a/11"].boxes, [[1, 2, 10, 20]])
    assert_boxes(sequences["coco/b/16"].boxes, [[5.5, 5, 8, 9]])
    assert len(sequences["coco/b/16"]) == 1
    assert_frame(sequences["coco/b/16"], 0, level(1))
    assert len(data.skipped) == 5 and "no_id.jpg" in data.skipped[0]
    for reason, annotation in zip(data.skipped[1:], (13, 14, 15, 17)):
        assert f"annotation {annotation}:" in reason
    assert "not a finite box of positive size" in data.skipped[1] and "listed image" in data.skipped[2]


@pytest.mark.parametrize(
    "annotations, images",
    [
        ("coco/ann.json", "coco/images"),  # images/ beside the JSON
        ("coco/ann.json", "coco"),  # images beside the JSON
        ("coco/annotations/instances_train2017.json", "coco/train2017"),  # the official layout
    ],
)
def test_coco_single_path_finds_the_images(tmp_path, annotations, images):
    write_coco(tmp_path / annotations, tmp_path / images)
    assert len(FORMATS["coco"](tmp_path / annotations).sequences) == 2
    assert len(FORMATS["coco"]((tmp_path / annotations).parent).sequences) == 2  # the folder holding one JSON
    assert len(read_training_data(f"coco:{tmp_path / annotations}").sequences) == 2


def test_coco_bad_files_are_errors(tmp_path):
    write_coco(tmp_path / "one.json", tmp_path / "images")
    (tmp_path / "two.json").write_text("{}")
    with pytest.raises(SourceError, match="holds 2 JSON files"):
        FORMATS["coco"](tmp_path)
    with pytest.raises(SourceError, match="no images and annotations"):
        read_coco(tmp_path / "two.json", tmp_path / "images")
    (tmp_path / "two.json").write_text('{"images": [')
    with pytest.raises(SourceError, match="cannot be read") as error:
        read_coco(tmp_path / "two.json", tmp_path / "images")
    assert str(tmp_path / "two.json") in str(error.value)
    with pytest.raises(SourceError, match="a.jpg is in none of"):
        read_coco(write_coco(tmp_path / "elsewhere" / "ann.json", tmp_path / "lost"))


# Spec, frames, imports -------------------------------------------------------------------------------------------


def test_read_training_data_spec(tmp_path):
    make_got10k(tmp_path, "a")
    assert [s.name for s in read_training_data(f"got10k:{tmp_path}").sequences] == ["got10k/a"]
    assert set(FORMATS) == {"got10k", "lasot", "trackingnet", "uav123", "vid", "coco"}
    for spec in ("imagenet:/data", str(tmp_path), "got10k:"):
        with pytest.raises(ValueError, match="got10k, lasot, trackingnet, uav123, vid, coco"):
            read_training_data(spec)


def test_frame_that_vanished_after_indexing_is_a_source_error(tmp_path):
    folder = make_got10k(tmp_path, "a")
    (sequence,) = read_got10k(tmp_path).sequences
    (folder / "00000002.jpg").unlink()
    with pytest.raises(SourceError, match="00000002.jpg"):
        sequence.frame(1)
    with pytest.raises(IndexError):
        sequence.frame_paths[3]
    assert sequence.frame_paths[-1].name == "00000003.jpg"


def test_readers_do_not_import_torch():
    code = "import sys, edgetrack.distill.data.readers; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"
