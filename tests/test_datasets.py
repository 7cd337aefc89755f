"""Dataset readers on fixture datasets written here in the real formats, on every error case, and on the shared data."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgetrack.runtime.datasets import Dataset, Sequence, load_dataset, load_video_sequence, read_groundtruth
from edgetrack.runtime.errors import SourceError

from conftest import DATA

# Frame i is a flat image of grey level 20 * i, so the order in which frames come back can be checked.
LEVEL = 20
SIZE = (24, 32)  # h, w

OTB_BOXES = np.array([[5, 6, 7, 8], [5.5, 6, 7, 8.25], [6, 7, 8, 9]])
# bag's first VOT polygon: xs 334.02, 438.19, 396.39, 292.23 and ys 128.36, 188.78, 260.83, 200.41, so
# x = 292.23, y = 128.36, w = 438.19 - 292.23 = 145.96, h = 260.83 - 128.36 = 132.47.
POLYGON = "334.02,128.36,438.19,188.78,396.39,260.83,292.23,200.41"
POLYGON_BOX = [292.23, 128.36, 145.96, 132.47]


def flat(i: int) -> np.ndarray:
    return np.full((*SIZE, 3), LEVEL * i, np.uint8)


def write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), flat(i))


def write_rows(path: Path, rows, sep: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(f"{v:g}" for v in row) + "\n" for row in rows))


def make_otb(folder: Path, sep: str = ",") -> Path:
    write_frames(folder / "img", [f"{i + 1:04d}.jpg" for i in range(len(OTB_BOXES))])
    write_rows(folder / "groundtruth_rect.txt", OTB_BOXES, sep)
    return folder


def make_vot(folder: Path, frame_dir: str = "color") -> Path:
    write_frames(folder / frame_dir, [f"{i + 1:08d}.jpg" for i in range(2)])
    (folder / "groundtruth.txt").write_text(f"{POLYGON}\n1,2,3,4\n")
    return folder


def write_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (SIZE[1], SIZE[0]))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(flat(i))
    writer.release()
    return path


def levels(sequence: Sequence) -> list[float]:
    frames = list(sequence.frames())
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.shape == (*SIZE, 3)
    return [float(frame.mean()) for frame in frames]


def assert_levels(sequence: Sequence, count: int) -> None:
    # JPEG and MJPG keep a flat grey within a couple of levels
    np.testing.assert_allclose(levels(sequence), [LEVEL * i for i in range(count)], atol=2)


def only(dataset: Dataset) -> Sequence:
    assert isinstance(dataset, Dataset) and len(dataset.sequences) == 1 and dataset.skipped == []
    return dataset.sequences[0]


# ----------------------------------------------------------------------------------------------- fixture formats


@pytest.mark.parametrize("sep", [",", "\t", "   ", ", "], ids=["comma", "tab", "spaces", "comma-space"])
def test_otb_folder(tmp_path, sep):
    sequence = only(load_dataset(make_otb(tmp_path / "Walker", sep)))
    assert sequence.name == "Walker"
    assert len(sequence) == 3
    assert sequence.groundtruth.dtype == np.float64
    np.testing.assert_array_equal(sequence.groundtruth, OTB_BOXES)
    assert [p.name for p in sequence.frame_paths] == ["0001.jpg", "0002.jpg", "0003.jpg"]
    assert_levels(sequence, 3)


def test_vot_folder_with_color_and_polygons(tmp_path):
    sequence = only(load_dataset(make_vot(tmp_path / "bag")))
    assert len(sequence) == 2
    np.testing.assert_allclose(sequence.groundtruth, [POLYGON_BOX, [1, 2, 3, 4]])
    assert all(p.parent.name == "color" for p in sequence.frame_paths)
    assert_levels(sequence, 2)


def test_vot_folder_with_bare_frames_in_natural_order(tmp_path):
    # names without zero padding: "10.png" must come after "9.png", not after "1.png"
    folder = tmp_path / "drone"
    write_frames(folder, [f"{i + 1}.png" for i in range(11)])
    write_rows(folder / "groundtruth.txt", [[1, 2, 3, 4]] * 11)
    sequence = only(load_dataset(folder))
    assert [p.name for p in sequence.frame_paths][8:] == ["9.png", "10.png", "11.png"]
    assert_levels(sequence, 11)


def test_folder_with_explicit_groundtruth(tmp_path):
    folder = tmp_path / "frames"
    write_frames(folder, ["a.jpg", "b.jpg"])
    write_rows(tmp_path / "boxes.txt", [[1, 2, 3, 4], [2, 3, 4, 5]], " ")
    sequence = only(load_dataset(folder, tmp_path / "boxes.txt"))
    np.testing.assert_array_equal(sequence.groundtruth, [[1, 2, 3, 4], [2, 3, 4, 5]])


def test_video_with_discovered_groundtruth(tmp_path):
    video = write_video(tmp_path / "walk.avi", 5)
    write_rows(tmp_path / "walk.txt", [[1, 2, 3, 4]] * 5)
    sequence = only(load_dataset(video))
    assert sequence.name == "walk" and sequence.video == video and sequence.frame_paths == ()
    assert len(sequence) == 5
    assert_levels(sequence, 5)


@pytest.mark.parametrize("gt_name", ["groundtruth.txt", "groundtruth_rect.txt"])
def test_video_finds_sequence_style_groundtruth(tmp_path, gt_name):
    video = write_video(tmp_path / "walk.avi", 2)
    (tmp_path / gt_name).write_text(f"{POLYGON}\n{POLYGON}\n")
    np.testing.assert_allclose(only(load_dataset(video)).groundtruth, [POLYGON_BOX] * 2)


def test_video_with_explicit_groundtruth(tmp_path):
    video = write_video(tmp_path / "walk.avi", 3)
    write_rows(tmp_path / "elsewhere" / "gt.txt", OTB_BOXES, "\t")
    sequence = load_video_sequence(video, tmp_path / "elsewhere" / "gt.txt")
    np.testing.assert_array_equal(sequence.groundtruth, OTB_BOXES)
    assert only(load_dataset(video, tmp_path / "elsewhere" / "gt.txt")).video == video


def test_parent_folder_loads_sequences_and_skips_the_rest(tmp_path):
    make_otb(tmp_path / "Walker")
    make_vot(tmp_path / "bag")
    make_vot(tmp_path / "ball", frame_dir=".")
    write_frames(tmp_path / "tennis_unlabeled", ["00000.jpg", "00001.jpg"])
    write_rows(tmp_path / "orphan" / "groundtruth.txt", [[1, 2, 3, 4]])
    (tmp_path / "empty").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / "notes.txt").write_text("not a sequence")
    dataset = load_dataset(tmp_path)
    assert [s.name for s in dataset.sequences] == ["Walker", "bag", "ball"]
    assert [len(s) for s in dataset.sequences] == [3, 2, 2]
    skipped = dict(dataset.skipped)
    assert list(skipped) == ["empty", "orphan", "tennis_unlabeled"]
    assert "no ground-truth file" in skipped["tennis_unlabeled"]
    assert "no frames" in skipped["orphan"] and "groundtruth.txt" in skipped["orphan"]
    assert skipped["empty"] == "no frames and no ground truth"


# ----------------------------------------------------------------------------------------------------- errors


def one_line_error(call, *patterns: str) -> None:
    with pytest.raises(SourceError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for pattern in patterns:
        assert pattern in message, message


def test_missing_path(tmp_path):
    one_line_error(lambda: load_dataset(tmp_path / "nope"), "nope", "does not exist")


def test_nothing_recognisable(tmp_path):
    (tmp_path / "readme.md").write_text("hello")
    one_line_error(lambda: load_dataset(tmp_path / "readme.md"), "readme.md", "not a video file")
    one_line_error(lambda: load_dataset(tmp_path), "not a dataset", "no frames and no ground truth")
    write_frames(tmp_path / "unlabeled", ["0.jpg"])
    one_line_error(lambda: load_dataset(tmp_path / "unlabeled"), "unlabeled", "no ground-truth file")
    write_rows(tmp_path / "orphan" / "groundtruth.txt", [[1, 2, 3, 4]])
    one_line_error(lambda: load_dataset(tmp_path / "orphan"), "orphan", "no frames")
    one_line_error(lambda: load_dataset(tmp_path / "orphan", tmp_path / "orphan" / "groundtruth.txt"), "no images")


def test_groundtruth_rows_must_match_frames(tmp_path):
    folder = make_otb(tmp_path / "Walker")
    write_rows(folder / "groundtruth_rect.txt", [[1, 2, 3, 4]] * 4)
    one_line_error(lambda: load_dataset(folder), "groundtruth_rect.txt", "4 rows", "3 frames")
    # inside a parent folder a broken sequence is an error, not a skip
    one_line_error(lambda: load_dataset(tmp_path), "4 rows", "3 frames")


def test_video_groundtruth_rows_must_match_frames(tmp_path):
    video = write_video(tmp_path / "walk.avi", 5)
    write_rows(tmp_path / "walk.txt", [[1, 2, 3, 4]] * 4)
    one_line_error(lambda: load_dataset(video), "walk.avi", "5 frames", "4 rows")


def test_video_frame_count_is_checked_when_reading(tmp_path):
    # the container's count is only a hint, so reading enforces the real count both ways
    video = write_video(tmp_path / "walk.avi", 5)
    long_gt = Sequence("walk", np.ones((7, 4)), video=video)
    one_line_error(lambda: list(long_gt.frames()), "walk.avi", "index 5", "7 rows")
    short_gt = Sequence("walk", np.ones((3, 4)), video=video)
    one_line_error(lambda: list(short_gt.frames()), "more frames than its 3")


@pytest.mark.parametrize(
    ("content", "line"),
    [("1,2,3,4\n1,2,x,4\n", 2), ("1,2,3,4\n1,2,3,4\n1,2,3,4,5\n", 3), ("1,2,3,4\n\n1,2,3,4\n", 2)],
    ids=["not-a-number", "five-values", "blank-line"],
)
def test_unparsable_groundtruth_line(tmp_path, content, line):
    folder = make_otb(tmp_path / "Walker")
    (folder / "groundtruth_rect.txt").write_text(content)
    one_line_error(lambda: load_dataset(folder), "groundtruth_rect.txt", f"line {line}:")


def test_trailing_blank_lines_and_nan_rows_are_fine(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,2,3,4\nNaN,NaN,NaN,NaN\n\n\n")
    boxes = read_groundtruth(path)
    assert boxes.shape == (2, 4) and np.isnan(boxes[1]).all()


def test_empty_or_missing_groundtruth(tmp_path):
    (tmp_path / "gt.txt").write_text("\n")
    one_line_error(lambda: read_groundtruth(tmp_path / "gt.txt"), "gt.txt", "empty")
    one_line_error(lambda: read_groundtruth(tmp_path / "none.txt"), "none.txt", "cannot read")


def test_video_errors(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    (tmp_path / "broken.txt").write_text("1,2,3,4\n")
    one_line_error(lambda: load_dataset(broken), "broken.mp4", "cannot read video")
    (tmp_path / "lone").mkdir()
    lone = write_video(tmp_path / "lone" / "clip.avi", 2)
    one_line_error(lambda: load_dataset(lone), "clip.avi", "no ground truth", "clip.txt")


def test_unreadable_frame_names_file_and_index(tmp_path):
    sequence = only(load_dataset(make_otb(tmp_path / "Walker")))
    sequence.frame_paths[1].write_bytes(b"truncated")
    frames = sequence.frames()
    assert next(frames).shape == (*SIZE, 3)
    one_line_error(lambda: next(frames), "0002.jpg", "index 1")


# ------------------------------------------------------------------------------------------------ shared data


def shared(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        # Real-data tests must fail, not skip, when the shared data is missing (CI runs them).
        pytest.fail(f"shared data not found at {path} (set EDGETRACK_DATA)")
    return path


def test_shared_sequences():
    dataset = load_dataset(shared("sequences"))
    assert {s.name: len(s) for s in dataset.sequences} == {"Crossing": 120, "bag": 196, "dat": 105}
    assert [name for name, _ in dataset.skipped] == ["tennis_unlabeled"]
    crossing, bag, _ = dataset.sequences
    np.testing.assert_array_equal(crossing.groundtruth[0], [205, 151, 17, 50])
    np.testing.assert_allclose(bag.groundtruth[0], POLYGON_BOX)
    first = next(crossing.frames())
    assert first.shape == (240, 360, 3) and first.dtype == np.uint8


def test_shared_video_matches_its_frames():
    sequence = only(load_dataset(shared("videos", "bag.avi"), shared("sequences", "bag", "groundtruth.txt")))
    assert len(sequence) == 196
    frames = sequence.frames()
    first = next(frames).astype(np.float64)
    image_1 = cv2.imread(str(shared("sequences", "bag", "color", "00000001.jpg"))).astype(np.float64)
    image_2 = cv2.imread(str(shared("sequences", "bag", "color", "00000002.jpg"))).astype(np.float64)
    # compression leaves ~2.3 levels of difference; the next frame of the sequence is ~27 levels away
    assert np.abs(first - image_1).mean() < 5
    assert np.abs(first - image_2).mean() > 15
    assert 1 + sum(1 for _ in frames) == 196
