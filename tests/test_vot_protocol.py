"""The VOT supervised protocol: overlaps, runs and scores against vot-toolkit 0.9.0's own (fixtures/vot/reference.json,
made by fixtures/vot/make_reference.py), and the run loop driven by scripted stand-in trackers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edgetrack.runtime.datasets import Sequence, load_dataset
from edgetrack.runtime.errors import InputError, SourceError
from edgetrack.runtime.regions import read_regions, region_box, region_overlap
from edgetrack.runtime.vot_protocol import (
    FrameState,
    SupervisedRun,
    accuracy_frames,
    eao_curve,
    eao_score,
    read_skip_tagged,
    run_sequence,
    run_supervised,
    sequence_accuracy,
    sequence_regions,
    summarise,
)

from conftest import cut_sequence

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "vot" / "reference.json").read_text())
#: vot-toolkit computes the EAO curve in float32 (its epsilon is 1.2e-7); this implementation in float64
EAO_TOLERANCE = 2e-7


class ScriptedTracker:
    """Reports a scripted box per frame; a frame is its own index broadcast to the image size."""

    def __init__(self, boxes):
        self.boxes = boxes
        self.inits: list[tuple[int, list[float]]] = []
        self.updates: list[int] = []

    def init(self, frame, box_xywh):
        self.inits.append((int(frame[0, 0, 0]), list(box_xywh)))

    def update(self, frame):
        index = int(frame[0, 0, 0])
        self.updates.append(index)
        return SimpleNamespace(box=self.boxes[index], score=1.0, lost=False)


class StillTracker:
    """Reports the box it was initialised on, whatever the frame."""

    def init(self, frame, box_xywh):
        self.box = tuple(box_xywh)

    def update(self, frame):
        return SimpleNamespace(box=self.box, score=1.0, lost=False)


class ReplayTracker:
    """Reports the given boxes one update after another (for runs without failures)."""

    def __init__(self, boxes):
        self.boxes = iter(boxes[1:])

    def init(self, frame, box_xywh):
        pass

    def update(self, frame):
        return SimpleNamespace(box=next(self.boxes), score=1.0, lost=False)


def index_frames(count: int, width: int, height: int):
    return (np.broadcast_to(np.int32(i), (height, width, 3)) for i in range(count))


def as_region(values):
    return None if values is None else np.array(values, dtype=np.float64)


def reference_run(spec, **options) -> SupervisedRun:
    regions = [as_region(r) for r in spec["groundtruth"]]
    frames = index_frames(len(regions), spec["width"], spec["height"])
    return run_supervised(ScriptedTracker(spec["tracker"]), frames, regions, spec["name"], **options)


@pytest.fixture(scope="module")
def reference_runs() -> list[SupervisedRun]:
    return [reference_run(spec) for spec in REFERENCE["sequences"]]


@pytest.mark.parametrize("case", REFERENCE["overlaps"], ids=range(len(REFERENCE["overlaps"])))
def test_overlap_equals_vot_toolkit(case):
    bounds = None if case["bounds"] is None else tuple(case["bounds"])
    assert region_overlap(as_region(case["first"]), as_region(case["second"]), bounds) == pytest.approx(
        case["overlap"], abs=1e-12
    )


def test_runs_equal_vot_toolkit(reference_runs):
    for spec, run in zip(REFERENCE["sequences"], reference_runs):
        expected = spec["expected"]
        assert run.initialisations.tolist() == expected["initialisations"], spec["name"]
        assert run.failures.tolist() == expected["failures"], spec["name"]
        np.testing.assert_allclose(run.overlaps, expected["overlaps"], rtol=0, atol=1e-12, err_msg=spec["name"])
        assert accuracy_frames(run.states).sum() == expected["accuracy_frames"], spec["name"]
        assert sequence_accuracy(run) == pytest.approx(expected["accuracy"], abs=1e-12), spec["name"]


def test_summary_equals_vot_toolkit(reference_runs):
    summary = summarise(reference_runs)
    expected = REFERENCE["summary"]
    for scores, spec in zip(summary.sequences, REFERENCE["sequences"]):
        assert scores.failures == spec["expected"]["failure_count"]
        assert scores.accuracy == pytest.approx(spec["expected"]["accuracy"], abs=1e-12)
        assert scores.robustness == pytest.approx(spec["expected"]["robustness"], abs=1e-12)
    assert summary.accuracy == pytest.approx(expected["accuracy"], abs=1e-12)
    assert summary.failures == pytest.approx(expected["failures"], abs=1e-12)
    assert summary.failures_total == expected["failures_total"]
    assert summary.robustness == pytest.approx(expected["robustness"], abs=1e-12)
    assert len(summary.eao_curve) == len(expected["eao_curve"])
    np.testing.assert_allclose(summary.eao_curve, expected["eao_curve"], rtol=0, atol=EAO_TOLERANCE)
    assert summary.eao == pytest.approx(expected["eao"], abs=EAO_TOLERANCE)
    assert json.loads(json.dumps(summary.to_json()))["eao"] == summary.eao


def test_skip_tags_equal_vot_toolkit():
    expected = REFERENCE["skip_tags"]
    spec = next(s for s in REFERENCE["sequences"] if s["name"] == expected["sequence"])
    tagged = np.zeros(len(spec["groundtruth"]), dtype=bool)
    tagged[expected["occlusion"]] = True
    run = reference_run(spec, skip_tagged=tagged)
    assert run.initialisations.tolist() == expected["initialisations"]
    assert run.failures.tolist() == expected["failures"]


def test_run_loop_fails_skips_five_and_burns_in():
    """Failures at 4 and 12 (12 inside the burn-in after re-initialising at 9): re-initialised on frames 9 and 17,
    the tracker never sees frames 5-8 and 13-16, and accuracy counts only frames 27-29, where the box is exact."""
    groundtruth = np.array([10.0, 10.0, 20.0, 20.0])
    boxes = [[11.0, 12.0, 20.0, 20.0]] * 30
    boxes[4] = boxes[12] = [40.0, 40.0, 10.0, 10.0]
    boxes[27:] = [list(groundtruth)] * 3
    tracker, progress = ScriptedTracker(boxes), []
    run = run_supervised(tracker, index_frames(30, 64, 64), [groundtruth] * 30, "scripted", on_frame=lambda: progress.append(1))
    assert len(progress) == 30
    assert [frame for frame, _ in tracker.inits] == [0, 9, 17]
    assert all(box == list(groundtruth) for _, box in tracker.inits)
    assert tracker.updates == [*range(1, 5), *range(10, 13), *range(18, 30)]
    assert run.failures.tolist() == [4, 12]
    assert np.flatnonzero(run.states == FrameState.SKIPPED).tolist() == [5, 6, 7, 8, 13, 14, 15, 16]
    assert np.flatnonzero(accuracy_frames(run.states)).tolist() == [27, 28, 29]
    assert sequence_accuracy(run) == 1.0
    assert np.isnan(run.boxes[[0, 5, 9]]).all() and run.boxes[4].tolist() == boxes[4]
    assert summarise([run]).sequences[0].robustness == pytest.approx(math.exp(-30 * 2 / 30))
    saved = json.loads(json.dumps(run.to_json()))
    assert saved["failures"] == [4, 12] and saved["boxes"][0] is None and saved["boxes"][4] == boxes[4]


def test_failure_near_the_end_is_not_reinitialised():
    boxes = [[0.0, 0.0, 8.0, 8.0]] * 10
    boxes[7] = [30.0, 30.0, 4.0, 4.0]
    tracker = ScriptedTracker(boxes)
    run = run_supervised(tracker, index_frames(10, 40, 40), [np.array([0.0, 0.0, 8.0, 8.0])] * 10)
    assert run.initialisations.tolist() == [0] and run.failures.tolist() == [7]
    assert (run.states[8:] == FrameState.SKIPPED).all() and tracker.updates == list(range(1, 8))


def test_polygon_initialises_on_its_box_and_scores_as_polygon():
    diamond = np.array([20.0, 0.0, 40.0, 20.0, 20.0, 40.0, 0.0, 20.0])
    tracker = ScriptedTracker([[0.0, 0.0, 40.0, 40.0]] * 3)
    run = run_supervised(tracker, index_frames(3, 64, 64), [diamond] * 3)
    assert tracker.inits == [(0, [0.0, 0.0, 40.0, 40.0])]
    assert run.overlaps[1] == region_overlap(np.array([0.0, 0.0, 40.0, 40.0]), diamond, (64, 64))
    assert 0.45 < run.overlaps[1] < 0.6  # the diamond covers half its box, not all of it


def test_eao_curve_by_hand():
    """A finished segment [0, 1, 0.5] and a failed one [0, 1]: after its failure the failed one counts as 0."""
    states = np.array([FrameState.INITIALISED, FrameState.TRACKED, FrameState.TRACKED])
    finished = SupervisedRun("a", states, np.zeros((3, 4)), np.array([0.0, 1.0, 0.5]), 0.0)
    states = np.array([FrameState.INITIALISED, FrameState.TRACKED, FrameState.FAILED, FrameState.SKIPPED])
    failed = SupervisedRun("b", states, np.zeros((4, 4)), np.array([0.0, 1.0, 0.0, 0.0]), 0.0)
    np.testing.assert_allclose(eao_curve([finished, failed]), [0.0, 1.0, 0.625])
    assert eao_score(np.array([0.0, 1.0, 0.625]), low=1, high=5) == pytest.approx(0.8125)
    assert math.isnan(eao_score(np.array([0.0, 1.0]), low=100, high=356))


def test_frame_and_region_counts_must_agree():
    tracker = ScriptedTracker([[0.0, 0.0, 8.0, 8.0]] * 5)
    with pytest.raises(InputError, match="4 frames but 5"):
        run_supervised(tracker, index_frames(4, 20, 20), [np.array([0.0, 0.0, 8.0, 8.0])] * 5)
    with pytest.raises(InputError, match="frame 0 has no ground truth to initialise"):
        run_supervised(tracker, index_frames(2, 20, 20), [None, np.array([0.0, 0.0, 8.0, 8.0])])


def test_reinitialisation_waits_for_a_frame_with_ground_truth():
    """A failure at frame 1 makes frame 6 due; frames 6 and 7 have no ground truth (target absent), so frame 8 initialises."""
    box = np.array([0.0, 0.0, 8.0, 8.0])
    regions = [box, box] + [box] * 4 + [None, None] + [box] * 2
    tracker = ScriptedTracker([[0.0, 0.0, 8.0, 8.0], [50.0, 50.0, 4.0, 4.0]] + [[0.0, 0.0, 8.0, 8.0]] * 8)
    run = run_supervised(tracker, index_frames(10, 80, 80), regions)
    assert list(run.initialisations) == [0, 8]
    assert list(run.failures) == [1]


def test_read_regions(tmp_path):
    path = tmp_path / "groundtruth.txt"
    path.write_text("1,2,3,4\n1 2\t3 4 5 6 7 8\nnan,nan,nan,nan\n0,0,4,0,4,4,0,4,2,5\n")
    regions = read_regions(path)
    assert [None if r is None else r.tolist() for r in regions] == [
        [1.0, 2.0, 3.0, 4.0],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        None,
        [0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0, 2.0, 5.0],
    ]
    assert region_box(regions[1]).tolist() == [1.0, 2.0, 6.0, 6.0]
    path.write_text("1,2,3,4\n1,2,3,4,5\n")
    with pytest.raises(SourceError, match="line 2"):
        read_regions(path)


def test_read_skip_tagged(tmp_path):
    (tmp_path / "occlusion.tag").write_text("0\n1\n1\n")
    (tmp_path / "motion.label").write_text("0\n0\n0\n0\n1\n0\n0\n")
    assert read_skip_tagged(tmp_path, ["occlusion", "motion"], 6).tolist() == [False, True, True, False, True, False]
    assert not read_skip_tagged(tmp_path, ["size"], 6).any()


def test_vot_folder_keeps_its_polygons(tmp_path):
    folder = tmp_path / "diamond"
    (folder / "color").mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(folder / "color" / f"{i + 1:08d}.jpg"), np.full((48, 64, 3), i, np.uint8))
    (folder / "groundtruth.txt").write_text("20,4,36,20,20,36,4,20\n" * 6)
    (sequence,) = load_dataset(folder).sequences
    regions = sequence_regions(sequence)
    assert len(regions) == 6 and all(len(r) == 8 for r in regions)
    run = run_sequence(StillTracker(), sequence)
    assert run.failures.size == 0 and run.overlaps[1] == region_overlap(np.array([4.0, 4.0, 32.0, 32.0]), regions[1], (64, 48))


def test_explicit_groundtruth_and_video_fallback(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i + 1:04d}.jpg"), np.zeros((20, 20, 3), np.uint8))
    (folder / "groundtruth.txt").write_text("1,1,5,5\n1,1,5,5\n1,1,5,5\n")
    (tmp_path / "other.txt").write_text("2,2,8,2,8,8,2,8\n" * 3)
    (sequence,) = load_dataset(folder).sequences
    assert sequence_regions(sequence)[0].tolist() == [1, 1, 5, 5]
    assert len(sequence_regions(sequence, tmp_path / "other.txt")[0]) == 8
    (tmp_path / "other.txt").write_text("2,2,8,2,8,8,2,8\n")
    with pytest.raises(SourceError, match="1 rows for 3 frames"):
        sequence_regions(sequence, tmp_path / "other.txt")
    video = Sequence("video", [[1, 1, 5, 5], [np.nan] * 4], video=tmp_path / "clip.mp4")
    assert [None if r is None else r.tolist() for r in sequence_regions(video)] == [[1, 1, 5, 5], None]


def test_frames_flagged_absent_have_no_region_and_the_run_waits_for_ground_truth(tmp_path):
    """LaSOT writes 0,0,0,0 where its occlusion flags say the target is gone: those frames have no region, a
    tracked one there fails (as vot-toolkit scores an empty ground truth) and the re-initialisation waits for the
    target to return instead of initialising on an empty box."""
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"{i:04d}.jpg")
        cv2.imwrite(str(paths[-1]), np.full((40, 40, 3), i, np.uint8))
    boxes = np.array([[4.0, 4.0, 8.0, 8.0]] * 12)
    boxes[3:9] = 0.0
    absent = np.zeros(12, bool)
    absent[3:9] = True
    sequence = Sequence("occluded", boxes, frame_paths=paths, absent=absent)
    regions = sequence_regions(sequence)
    assert [r is None for r in regions] == list(absent)
    run = run_sequence(StillTracker(), sequence)
    assert list(run.failures) == [3] and list(run.initialisations) == [0, 9]


def test_real_vot_sequence_regions(data, tmp_path):
    folder = cut_sequence(data / "benchmark" / "VOT15_ball1", "img", "groundtruth.txt", 15, tmp_path / "ball1")
    (sequence,) = load_dataset(folder).sequences
    regions = sequence_regions(sequence)
    assert len(regions) == len(sequence) == 15 and all(len(r) == 8 for r in regions)
    np.testing.assert_allclose([region_box(r) for r in regions], sequence.groundtruth)
    run = run_sequence(ReplayTracker(sequence.groundtruth), sequence)
    assert run.initialisations.tolist() == [0] and run.failures.size == 0
    # the min/max box of a tilted polygon overlaps it by less than 1
    assert 0.5 < sequence_accuracy(run, burnin=1) < 1.0
