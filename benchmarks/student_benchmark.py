"""Score bundles on the same frames of the real benchmark, with a paired comparison against NanoTrack v2.

Every entry tracks every sequence of ``--dataset`` (default ``$EDGETRACK_DATA/benchmark``) from its first
ground-truth box, as ``edgetrack eval`` does: frames whose target is absent are left out of the curves (see
``edgetrack.runtime.metrics``). For speed, the entries take turns sequence by sequence for ``--rounds`` rounds in
one process, each round starting with another entry, so that machine noise hits them alike; fps is the median over
the rounds of updated frames over update time.

For each entry, the mean of its per-sequence AUC differences against the reference (NanoTrack v2) comes with a 95%
bootstrap interval over sequences: an interval that excludes 0 tells the two apart on this benchmark.

With ``--sre MAGNITUDE`` every entry also tracks every sequence from OTB's 12 perturbed first boxes (shifts of 10%
and scales 0.8-1.2 at 1, ``edgetrack.runtime.spatial_robustness``), and a sequence's scores are the means over the 13
starts: the comparison then rests on more than one first box per sequence. The report adds each start's mean AUC.

Entries: bundle paths (``NAME=PATH`` to name them), shipped student names, and the published references
``nanotrack-v1``, ``nanotrack-v2``, ``nanotrack-v3`` (imported from ``$EDGETRACK_DATA/models/nanotrack``) and
``cv2.TrackerNano`` (OpenCV's loop on the v2 pair).

    .venv/bin/python benchmarks/student_benchmark.py nanotrack-v1 nanotrack-v2 nanotrack-v3 cv2.TrackerNano \\
        student=runs/student.etb --rounds 3 --out benchmarks/student_benchmark
    .venv/bin/python benchmarks/student_benchmark.py nanotrack-v2 edgetrack-nano-m --sre 0.4 --rounds 1 --out runs/sre
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.bundle import Bundle, load_bundle
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.environment import cpu_model
from edgetrack.runtime.evaluate import SequenceResult, track_sequence
from edgetrack.runtime.files import write_atomic
from edgetrack.runtime.metrics import Interval, paired_bootstrap
from edgetrack.runtime.spatial_robustness import GROUND_TRUTH, StartPerturbation, sre_starts
from edgetrack.runtime.tracker import SiameseTracker

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
REFERENCE = "nanotrack-v2"
OPENCV = "cv2.TrackerNano"
PUBLISHED = {
    "nanotrack-v1": ("v1", "nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"),
    "nanotrack-v2": ("v2", "nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"),
    "nanotrack-v3": ("v3", "nanotrack_backbone.onnx", "nanotrack_head.onnx"),
}


@dataclass(frozen=True)
class SequenceRow:
    auc: float
    precision: float
    norm_precision: float
    lost_recall: float
    lost_false_alarms: float


@dataclass(frozen=True)
class EntryRow:
    name: str
    source: str
    params: int | None
    size_mb: float | None
    search_gflops: float | None
    auc: float
    precision: float
    norm_precision: float
    fps: float
    #: each sequence's scores, the means over the starts
    sequences: dict[str, SequenceRow]
    #: start name -> mean AUC over the sequences from that first box
    start_aucs: dict[str, float]
    vs_reference: Interval | None = None


class Entry:
    """Something that tracks: a bundle's ``SiameseTracker`` or OpenCV's TrackerNano, with what it costs."""

    def __init__(self, name: str, source: str, tracker, bundle: Bundle | None = None):
        self.name, self.source, self.tracker, self.bundle = name, source, tracker, bundle
        #: sequence -> its results from each start, in the order of the starts (the first round's)
        self.results: dict[str, list[SequenceResult]] = {}
        #: round -> [frames updated, seconds spent in updates]
        self.timing: dict[int, list[float]] = {}

    def timed(self, round_index: int, result: SequenceResult) -> None:
        total = self.timing.setdefault(round_index, [0, 0.0])
        total[0] += result.frames - 1
        total[1] += result.update_seconds

    def row(self, starts: tuple[StartPerturbation, ...] = (GROUND_TRUTH,)) -> EntryRow:
        def over_starts(results: list[SequenceResult]) -> SequenceRow:
            fields = [(r.scores.auc, r.scores.precision, r.scores.norm_precision, r.lost.recall, r.lost.false_alarms) for r in results]
            return SequenceRow(*(float(v) for v in np.mean(fields, axis=0)))

        sequences = {name: over_starts(results) for name, results in self.results.items()}
        cost = self.bundle.meta.cost if self.bundle else None
        files = self.bundle.model_paths("fp32") if self.bundle else ()
        return EntryRow(
            name=self.name,
            source=self.source,
            params=cost.params if cost else None,
            size_mb=sum(p.stat().st_size for p in files) / 1e6 if files else None,
            search_gflops=cost.search_gflops if cost else None,
            auc=float(np.mean([s.auc for s in sequences.values()])),
            precision=float(np.mean([s.precision for s in sequences.values()])),
            norm_precision=float(np.mean([s.norm_precision for s in sequences.values()])),
            fps=statistics.median(frames / seconds for frames, seconds in self.timing.values()),
            sequences=sequences,
            start_aucs={s.name: float(np.mean([results[i].scores.auc for results in self.results.values()])) for i, s in enumerate(starts)},
        )


class Preloaded:
    """A sequence whose frames are decoded once and replayed to every entry in every round."""

    def __init__(self, sequence):
        self.name, self.groundtruth = sequence.name, sequence.groundtruth
        self.absent, self.scored = sequence.absent, sequence.scored
        self.images = list(sequence.frames())

    def __len__(self) -> int:
        return len(self.images)

    def frames(self):
        return iter(self.images)


def open_entry(spec: str, workdir: Path) -> Entry:
    """``nanotrack-v2``, ``cv2.TrackerNano``, a shipped name, ``PATH`` or ``NAME=PATH``."""
    if spec == OPENCV:
        from edgetrack.deploy.opencv_nano import OpenCVNanoTracker

        _, backbone, head = PUBLISHED[REFERENCE]
        folder = DATA / "models" / "nanotrack" / "v2"
        return Entry(OPENCV, f"OpenCV's loop on {folder}", OpenCVNanoTracker(folder / backbone, folder / head))
    if spec in PUBLISHED:
        from edgetrack.deploy.import_nanotrack import import_nanotrack

        version, backbone, head = PUBLISHED[spec]
        folder = DATA / "models" / "nanotrack" / version
        bundle = import_nanotrack(folder / backbone, folder / head, workdir / f"{spec}.etb", version=version)
        source = f"published pair in {folder}"
    else:
        name, _, path = spec.rpartition("=")
        bundle = load_bundle(resolve_bundle(path))
        spec, source = name or bundle.meta.name, str(path)
    return Entry(spec, source, SiameseTracker(bundle.meta, open_backend(bundle, threads=None)), bundle)


def resolve_bundle(path: str) -> Path:
    """A bundle path, or the name of a student shipped with the runtime."""
    try:
        from edgetrack.runtime.pretrained import resolve

        return resolve(path)
    except ImportError:
        return Path(path)


def run_benchmark(entries: list[Entry], dataset: Path, rounds: int, starts: tuple[StartPerturbation, ...] = (GROUND_TRUTH,), progress=print) -> None:
    sequences = load_dataset(dataset).sequences
    for index, sequence in enumerate(sequences, 1):
        progress(f"[{index}/{len(sequences)}] {sequence.name}: {len(sequence)} frames x {len(entries)} entries x {len(starts)} starts x {rounds} rounds")
        preloaded = Preloaded(sequence)
        for round_index in range(rounds):
            shift = round_index % len(entries)
            for start in starts:
                for entry in entries[shift:] + entries[:shift]:
                    result = track_sequence(entry.tracker, preloaded, start=start)
                    if round_index == 0:
                        entry.results.setdefault(sequence.name, []).append(result)
                    entry.timed(round_index, result)


def compare(rows: list[EntryRow], reference: str = REFERENCE) -> list[EntryRow]:
    """Each row with its paired AUC difference against ``reference`` (None for the reference itself)."""
    base = next((r for r in rows if r.name == reference), None)
    if base is None:
        return rows
    names = sorted(base.sequences)
    return [
        row if row is base else dataclasses.replace(row, vs_reference=paired_bootstrap([row.sequences[n].auc - base.sequences[n].auc for n in names]))
        for row in rows
    ]


def shown(dataset: Path) -> str:
    """The dataset as the reports name it: under ``$EDGETRACK_DATA`` rather than this machine's folders."""
    return str(dataset).replace(str(DATA), "$EDGETRACK_DATA")


def render_markdown(rows: list[EntryRow], dataset: Path, rounds: int, sre: float | None = None) -> str:
    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"Benchmark: {shown(dataset)} ({len(rows[0].sequences)} sequences); fps: median of {rounds} interleaved rounds, "
        f"update calls only, on {cpu_model()} ({os.cpu_count()} cores).",
        *([] if sre is None else [f"Scores: means over {len(rows[0].start_aucs)} first boxes per sequence (SRE at {sre:g}x OTB's perturbations)."]),
        "",
        f"| entry | params | MB | GFLOPs x | AUC | P@20 | nP@0.2 | fps | AUC - {REFERENCE} [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "reference" if r.vs_reference is None else str(r.vs_reference) + (" *" if r.vs_reference.excludes_zero else "")
        params = "-" if r.params is None else f"{r.params:,}"
        lines.append(
            f"| {r.name} | {params} | {number(r.size_mb, 2)} | {number(r.search_gflops, 3)} | {r.auc:.3f} | {r.precision:.3f} | "
            f"{r.norm_precision:.3f} | {r.fps:.0f} | {diff} |"
        )
    lines += ["", "\\* the interval excludes 0.", "", "AUC per sequence:", ""]
    names = sorted(rows[0].sequences)
    lines += ["| sequence | " + " | ".join(r.name for r in rows) + " |", "|---|" + "---|" * len(rows)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{r.sequences[n].auc:.3f}" for r in rows) + " |")
    if sre is not None:
        lines += ["", "Mean AUC from each first box:", "", "| start | " + " | ".join(r.name for r in rows) + " |", "|---|" + "---|" * len(rows)]
        for start in rows[0].start_aucs:
            lines.append(f"| {start} | " + " | ".join(f"{r.start_aucs[start]:.3f}" for r in rows) + " |")
    return "\n".join(lines) + "\n"


def write_report(rows: list[EntryRow], dataset: Path, rounds: int, out: Path, sre: float | None = None) -> tuple[Path, Path]:
    report = {
        "dataset": shown(dataset),
        "rounds": rounds,
        "sre": sre,
        "reference": REFERENCE,
        "environment": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "entries": [{**dataclasses.asdict(r), "vs_reference_excludes_zero": r.vs_reference.excludes_zero if r.vs_reference else None} for r in rows],
    }
    paths = out.parent / f"{out.name}.json", out.parent / f"{out.name}.md"
    write_atomic(paths[0], json.dumps(report, indent=2) + "\n")
    write_atomic(paths[1], render_markdown(rows, dataset, rounds, sre))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("entries", nargs="+", help="nanotrack-v1/v2/v3, cv2.TrackerNano, a shipped name, PATH or NAME=PATH")
    parser.add_argument("--dataset", type=Path, default=DATA / "benchmark")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(""))
    parser.add_argument("--sre", type=float, metavar="MAGNITUDE", help="also track from OTB's 12 perturbed first boxes at this multiple of their size (1: OTB's)")
    args = parser.parse_args()
    try:
        starts = (GROUND_TRUTH,) if args.sre is None else sre_starts(args.sre)
    except ValueError as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory() as tmp:
        entries = [open_entry(spec, Path(tmp)) for spec in args.entries]
        run_benchmark(entries, args.dataset, args.rounds, starts)
        rows = compare([e.row(starts) for e in entries])
    for path in write_report(rows, args.dataset, args.rounds, args.out, args.sre):
        print(f"wrote {path}")
    print(render_markdown(rows, args.dataset, args.rounds, args.sre))


if __name__ == "__main__":
    main()
