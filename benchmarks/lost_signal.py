"""The lost-target flag before and after the calibrated lost signal (``runtime.lost_signal``), and long-term mode.

For NanoTrack v2 (imported from ``$EDGETRACK_DATA/models/nanotrack/v2``) and the shipped students
``edgetrack-nano-m`` and ``edgetrack-nano-s``, every sequence is tracked once per mode (default and
``long_term=True``) as ``edgetrack eval`` does (``evaluate.track_sequence``: frames whose target is absent are left
out of the AUC and are where the lost flag is scored). One pass gives both flags: the old one, the model's raw score
of the chosen location (``TrackResult.raw_score``) below its threshold, and the new one (``TrackResult.lost``: the
calibrated signal, ``TrackResult.score``, below ``hyper.lost_threshold``).

Two pairs of thresholds: the bundle's ``lost_threshold`` (0.8 for all three) for both flags, and each flag's
threshold tuned per model on ``$EDGETRACK_DATA/train`` (the F1 against misses, below, of the default mode's frames
at best), as ``edgetrack tune`` would set it. The benchmark never chooses anything.

Each flag is scored against two truths: ``absent`` (the ground truth holds no target) and ``miss`` (absent, or the
reported box does not overlap the target: the box cannot be trusted). Precision is the share of flagged frames
that are absent (missed), recall the share of absent (missed) frames that are flagged. Suv and FaceOcc1 have
occlusions but no absent frame, so against ``absent`` only their false alarms (flagged present frames) say
anything; TLD_pedestrian3 has 28 absent frames.

The report also gives the flags pooled over ``train/`` (where the signal was chosen; TLD_panda has 270 absent
frames), and with ``--all`` the mean AUC and fps over the whole benchmark at the bundle's threshold. fps is updated
frames over update time on one thread; on a shared machine it is noisy: compare modes within one run only.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/lost_signal.py --all --out benchmarks/lost_signal
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.bundle import Bundle, load_bundle
from edgetrack.runtime.datasets import Sequence, load_dataset
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.files import write_atomic
from edgetrack.runtime.metrics import LostScores, lost_scores, rect_iou
from edgetrack.runtime.pretrained import resolve
from edgetrack.runtime.tracker import SiameseTracker, TrackResult

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
MODELS = ("nanotrack-v2", "edgetrack-nano-m", "edgetrack-nano-s")
LOST_SEQUENCES = ("Suv", "FaceOcc1", "TLD_pedestrian3")
MODES = {"default": False, "long-term": True}
#: Thresholds tried when tuning on train/: the lost signal's, and the raw score's (which sits close to 1).
SIGNAL_GRID = np.round(np.arange(0.50, 0.96, 0.01), 2)
RAW_GRID = np.concatenate([np.round(np.arange(0.50, 0.99, 0.01), 2), np.round(np.arange(0.990, 1.0, 0.001), 3)])


@dataclass(frozen=True)
class Thresholds:
    """Where each flag is raised: the raw score below ``old``, the lost signal below ``new``."""

    name: str
    old: float
    new: float


@dataclass(frozen=True)
class FlagScores:
    """One lost flag against one truth: counts, then precision, recall, F1 and the false-alarm share."""

    flagged: int
    positives: int
    hits: int
    negatives: int

    @classmethod
    def of(cls, scores: LostScores) -> FlagScores:
        return cls(scores.lost_when_absent + scores.lost_when_present, scores.absent_frames, scores.lost_when_absent, scores.present_frames)

    def __add__(self, other: FlagScores) -> FlagScores:
        return FlagScores(self.flagged + other.flagged, self.positives + other.positives, self.hits + other.hits, self.negatives + other.negatives)

    @property
    def precision(self) -> float:
        return self.hits / self.flagged if self.flagged else float("nan")

    @property
    def recall(self) -> float:
        return self.hits / self.positives if self.positives else float("nan")

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else (0.0 if p == 0 or r == 0 else float("nan"))

    @property
    def false_alarms(self) -> float:
        return (self.flagged - self.hits) / self.negatives if self.negatives else float("nan")

    def to_json(self) -> dict:
        return {
            "flagged": self.flagged, "positives": self.positives, "hits": self.hits, "negatives": self.negatives,
            "precision": self.precision, "recall": self.recall, "f1": self.f1, "false_alarms": self.false_alarms,
        }


@dataclass(frozen=True)
class Row:
    """One model on one sequence (or pooled over several) in one mode, at one pair of thresholds."""

    model: str
    sequence: str
    mode: str
    thresholds: Thresholds
    auc: float
    fps: float
    frames: int
    #: flag name ("old", "new") -> truth name ("absent", "miss") -> scores
    flags: dict[str, dict[str, FlagScores]]

    def to_json(self) -> dict:
        return {
            "model": self.model, "sequence": self.sequence, "mode": self.mode,
            "thresholds": dataclasses.asdict(self.thresholds), "auc": self.auc, "fps": self.fps, "frames": self.frames,
            "flags": {flag: {truth: s.to_json() for truth, s in truths.items()} for flag, truths in self.flags.items()},
        }


@dataclass(frozen=True)
class Frames:
    """The updated frames of some sequences: raw scores, lost-signal scores and whether the box missed the target."""

    raw: np.ndarray
    score: np.ndarray
    miss: np.ndarray

    def __add__(self, other: Frames) -> Frames:
        return Frames(*(np.concatenate([a, b]) for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


class Recording:
    """A tracker that keeps each update's raw score, lost-signal score and flag: one pass scores both flags."""

    def __init__(self, tracker: SiameseTracker):
        self.tracker = tracker
        self.results: list[TrackResult] = []

    def init(self, frame, box):
        self.results.clear()
        return self.tracker.init(frame, box)

    def update(self, frame) -> TrackResult:
        result = self.tracker.update(frame)
        self.results.append(result)
        return result


def score_sequence(model: str, mode: str, thresholds: Thresholds, tracker: Recording, sequence: Sequence) -> tuple[Row, Frames]:
    result = track_sequence(tracker, sequence)
    count = result.frames
    absent = sequence.absent[1:count]
    miss = absent | (rect_iou(result.boxes[1:], np.nan_to_num(sequence.groundtruth[1:count])) == 0)
    frames = Frames(np.array([r.raw_score for r in tracker.results]), np.array([r.score for r in tracker.results]), miss)
    flags = {
        name: {"absent": FlagScores.of(lost_scores(flagged, absent)), "miss": FlagScores.of(lost_scores(flagged, miss))}
        for name, flagged in (("old", frames.raw < thresholds.old), ("new", np.array([r.lost for r in tracker.results])))
    }
    return Row(model, sequence.name, mode, thresholds, result.scores.auc, result.fps, count, flags), frames


def pooled(rows: list[Row], name: str) -> Row:
    """The rows of one model, mode and thresholds pooled: flags summed, AUC the mean over sequences, fps over all
    updated frames."""
    first = rows[0]
    seconds = sum((r.frames - 1) / r.fps for r in rows)
    flags = {flag: {truth: sum((r.flags[flag][truth] for r in rows[1:]), first.flags[flag][truth]) for truth in truths} for flag, truths in first.flags.items()}
    auc = float(np.mean([r.auc for r in rows]))
    return Row(first.model, name, first.mode, first.thresholds, auc, sum(r.frames - 1 for r in rows) / seconds, sum(r.frames for r in rows), flags)


def pooled_rows(rows: list[Row], name: str) -> list[Row]:
    """Per model, mode and thresholds, the rows pooled under ``name``."""
    keys = dict.fromkeys((r.model, r.mode, r.thresholds) for r in rows)
    return [pooled([r for r in rows if (r.model, r.mode, r.thresholds) == key], name) for key in keys]


def load_model(model: str, workdir: Path) -> Bundle:
    """A shipped student by name, or NanoTrack v2 imported from the published pair into ``workdir``."""
    if model != "nanotrack-v2":
        return load_bundle(resolve(model))
    from edgetrack.deploy.import_nanotrack import import_nanotrack

    folder = DATA / "models" / "nanotrack" / "v2"
    return import_nanotrack(folder / "nanotrack_backbone_sim.onnx", folder / "nanotrack_head_sim.onnx", workdir / "nanotrack-v2.etb", version="v2")


def run(model: str, bundle: Bundle, thresholds: Thresholds, sequences: list[Sequence], progress=print) -> tuple[list[Row], Frames]:
    """``bundle`` in both modes on every sequence, its lost threshold set to ``thresholds.new``; the rows, and the
    default mode's frames."""
    meta = dataclasses.replace(bundle.meta, hyper=dataclasses.replace(bundle.meta.hyper, lost_threshold=thresholds.new))
    rows, default_frames = [], []
    for mode, long_term in MODES.items():
        with SiameseTracker(meta, open_backend(bundle, threads=1), bundle=bundle, long_term=long_term) as tracker:
            recording = Recording(tracker)
            for sequence in sequences:
                row, frames = score_sequence(model, mode, thresholds, recording, sequence)
                rows.append(row)
                if not long_term:
                    default_frames.append(frames)
                progress(f"{model} {mode} {thresholds.name} {sequence.name}: AUC {row.auc:.3f}, {row.fps:.0f} fps")
    return rows, sum(default_frames[1:], default_frames[0])


def best_threshold(values: np.ndarray, truth: np.ndarray, grid: np.ndarray) -> float:
    """The threshold of ``grid`` whose flag ``values < threshold`` has the best F1 against ``truth``."""
    def f1(threshold: float) -> float:
        return np.nan_to_num(FlagScores.of(lost_scores(values < threshold, truth)).f1)

    return float(max(grid, key=f1))


def _n(value: float, digits: int = 3) -> str:
    return "-" if np.isnan(value) else f"{value:.{digits}f}"


def _prf(s: FlagScores) -> str:
    return f"{_n(s.precision, 2)} / {_n(s.recall, 2)} / {_n(s.f1, 2)}"


def flag_table(rows: list[Row], truth: str) -> list[str]:
    lines = [
        "| model | sequence | mode | thresholds old / new | AUC | old P / R / F1 | new P / R / F1 | false alarms old / new | fps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        old, new, t = r.flags["old"][truth], r.flags["new"][truth], r.thresholds
        lines.append(
            f"| {r.model} | {r.sequence} | {r.mode} | {t.name}: {t.old:g} / {t.new:g} | {_n(r.auc)} | {_prf(old)} | "
            f"{_prf(new)} | {_n(old.false_alarms, 2)} / {_n(new.false_alarms, 2)} | {r.fps:.0f} |"
        )
    return lines


def render_markdown(report: dict[str, list[Row]]) -> str:
    lines = [
        "# Lost signal and long-term mode (`benchmarks/lost_signal.py`)",
        "",
        "old: the raw score of the chosen location below its threshold; new: the calibrated lost signal",
        "(`runtime.lost_signal`, `TrackResult.score`) below `hyper.lost_threshold`. Thresholds: the bundle's (0.8 for",
        "all three models), or each flag's tuned per model on train/. P / R / F1 against the frames whose target is",
        "absent; false alarms: the share of present frames flagged. fps: one thread, nice'd, on a 2-core machine shared",
        "with other jobs: noisy, compare the modes of one model only.",
        "",
        "## Suv, FaceOcc1, TLD_pedestrian3: against absence",
        "",
        *flag_table(report["sequences"], "absent"),
        "",
        "Pooled over the three:",
        "",
        *flag_table(report["pooled"], "absent"),
        "",
        "## Pooled over the three, against misses (absent, or the box does not overlap the target)",
        "",
        *flag_table(report["pooled"], "miss"),
    ]
    if report.get("benchmark"):
        lines += ["", "## Whole benchmark (15 sequences, bundle thresholds): mean AUC and fps", "", "| model | mode | mean AUC | fps |", "|---|---|---|---|"]
        lines += [f"| {r.model} | {r.mode} | {_n(r.auc)} | {r.fps:.0f} |" for r in report["benchmark"]]
    lines += ["", "## train/ (where the signal and thresholds were chosen), pooled over its 5 sequences: against misses", ""]
    lines += flag_table(report["train"], "miss")
    lines += ["", "Against absence (TLD_panda's 270 absent frames):", ""]
    lines += flag_table(report["train"], "absent")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also the mean AUC and fps over the whole benchmark")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("lost_signal"), help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    benchmark = load_dataset(DATA / "benchmark").sequences
    chosen = [s for s in benchmark if s.name in LOST_SEQUENCES]
    train = load_dataset(DATA / "train").sequences
    report: dict[str, list[Row]] = {"sequences": [], "train": [], "benchmark": []}
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            bundle = load_model(model, Path(tmp))
            threshold = bundle.meta.hyper.lost_threshold
            bundled = Thresholds("bundle", threshold, threshold)
            train_rows, frames = run(model, bundle, bundled, train)
            tuned = Thresholds("tuned", best_threshold(frames.raw, frames.miss, RAW_GRID), best_threshold(frames.score, frames.miss, SIGNAL_GRID))
            report["train"] += pooled_rows(train_rows + run(model, bundle, tuned, train)[0], "train")
            rows = run(model, bundle, bundled, benchmark if args.all else chosen)[0]
            if args.all:
                report["benchmark"] += pooled_rows(rows, "benchmark")
            report["sequences"] += [r for r in rows if r.sequence in LOST_SEQUENCES] + run(model, bundle, tuned, chosen)[0]
    report["pooled"] = pooled_rows(report["sequences"], "pooled")
    raw = {key: [r.to_json() for r in rows] for key, rows in report.items()}
    write_atomic(args.out.with_suffix(".json"), json.dumps(raw, indent=2) + "\n")
    write_atomic(args.out.with_suffix(".md"), render_markdown(report))
    print(render_markdown(report))


if __name__ == "__main__":
    main()
