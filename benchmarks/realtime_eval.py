"""Offline AUC against latency-aware AUC (LAE, ``edgetrack.runtime.realtime``) at given camera frame rates.

Each tracker runs on ONNX Runtime on the CPU with ``--threads`` intra-op threads (OpenCV, which crops, gets the
same number), to stand in for a small board. Per sequence of ``--dataset`` (default ``$EDGETRACK_DATA/benchmark``),
each tracker tracks it offline (``evaluate.track_sequence``: every frame, no clock) and then once against a camera
at each ``--camera-fps``; the trackers take turns sequence by sequence. Each realtime run is scored twice: with
LAE's strict rule (a frame shows the latest result done by its arrival) and with e-LAE's one frame of permitted
latency (done by the next frame's arrival). AUC and the share of frames processed are means over sequences;
fps is updated frames over update time, over all sequences.

The realtime figures depend on the machine's speed and load: run it on a quiet machine, and name the machine.
Trackers: ``nanotrack-v2`` (imported from ``$EDGETRACK_DATA/models/nanotrack/v2``), shipped student names,
bundle paths.

    .venv/bin/python benchmarks/realtime_eval.py --camera-fps 30 500 --threads 1 --out benchmarks/realtime_eval
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import onnxruntime

from edgetrack.runtime.datasets import Sequence, load_dataset
from edgetrack.runtime.environment import cpu_model
from edgetrack.runtime.evaluate import SequenceResult, track_sequence
from edgetrack.runtime.files import write_atomic
from edgetrack.runtime.open_tracker import open_tracker
from edgetrack.runtime.realtime import RealtimeSequenceResult, run_realtime, score_timeline
from edgetrack.runtime.tracker import SiameseTracker

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
NANOTRACK_V2 = "nanotrack-v2"
TRACKERS = (NANOTRACK_V2, "edgetrack-nano-m", "edgetrack-nano-s")
#: e-LAE's permitted latency, in frame periods, of the two scorings of each realtime run.
STRICT, ONE_FRAME = 0.0, 1.0
WARMUP_UPDATES = 20


@dataclass(frozen=True)
class RealtimeRow:
    """One tracker at one camera rate, over every sequence."""

    camera_fps: float
    auc_strict: float
    auc_one_frame: float
    processed: float
    mean_frames_behind: float
    fps: float


@dataclass(frozen=True)
class TrackerRow:
    name: str
    offline_auc: float
    offline_fps: float
    realtime: list[RealtimeRow]
    #: per sequence: offline AUC, then strict and one-frame AUC at each camera rate
    sequences: dict[str, dict[str, float]]


def open_trackers(names: list[str], threads: int, workdir: Path) -> dict[str, SiameseTracker]:
    trackers = {}
    for name in names:
        bundle = name
        if name == NANOTRACK_V2:
            from edgetrack.deploy.import_nanotrack import import_nanotrack

            pair = DATA / "models" / "nanotrack" / "v2"
            backbone, head = pair / "nanotrack_backbone_sim.onnx", pair / "nanotrack_head_sim.onnx"
            bundle = import_nanotrack(backbone, head, workdir / "nanotrack-v2.etb", version="v2").path
        trackers[name] = open_tracker(bundle, backend="onnxruntime", device="cpu", threads=threads)
    return trackers


def warm_up(tracker: SiameseTracker, sequence: Sequence) -> None:
    """The first calls of a session allocate; keep them out of the camera's time."""
    frames = sequence.frames()
    tracker.init(next(frames), sequence.groundtruth[0])
    for _, frame in zip(range(WARMUP_UPDATES), frames):
        tracker.update(frame)


def fps_over(results: list[SequenceResult]) -> float:
    seconds = sum(r.update_seconds for r in results)
    updated = sum(len(r.updated_frames) if isinstance(r, RealtimeSequenceResult) else r.frames - 1 for r in results)
    return updated / seconds


def realtime_row(camera_fps: float, strict: list[RealtimeSequenceResult], one_frame: list[RealtimeSequenceResult]) -> RealtimeRow:
    return RealtimeRow(
        camera_fps=camera_fps,
        auc_strict=statistics.mean(r.scores.auc for r in strict),
        auc_one_frame=statistics.mean(r.scores.auc for r in one_frame),
        processed=statistics.mean(len(r.updated_frames) / (r.frames - 1) for r in strict),
        mean_frames_behind=statistics.mean(r.mean_frames_behind for r in strict),
        fps=fps_over(strict),
    )


def run(
    trackers: dict[str, SiameseTracker], sequences: list[Sequence], camera_rates: list[float], progress=print
) -> list[TrackerRow]:
    offline: dict[str, list[SequenceResult]] = {name: [] for name in trackers}
    online = {(name, rate, latency): [] for name in trackers for rate in camera_rates for latency in (STRICT, ONE_FRAME)}
    for tracker in trackers.values():
        warm_up(tracker, sequences[0])
    for index, sequence in enumerate(sequences, 1):
        progress(f"[{index}/{len(sequences)}] {sequence.name}: {len(sequence)} frames")
        for name, tracker in trackers.items():
            offline[name].append(track_sequence(tracker, sequence))
            for rate in camera_rates:
                timeline = run_realtime(tracker, sequence, rate)
                for latency in (STRICT, ONE_FRAME):
                    online[name, rate, latency].append(score_timeline(sequence, timeline, latency))
    rows = []
    for name in trackers:
        per_sequence = {r.name: {"offline": r.scores.auc} for r in offline[name]}
        for rate in camera_rates:
            for latency, label in ((STRICT, "strict"), (ONE_FRAME, "one_frame")):
                for r in online[name, rate, latency]:
                    per_sequence[r.name][f"{label}@{rate:g}"] = r.scores.auc
        rows.append(
            TrackerRow(
                name=name,
                offline_auc=statistics.mean(r.scores.auc for r in offline[name]),
                offline_fps=fps_over(offline[name]),
                realtime=[realtime_row(rate, online[name, rate, STRICT], online[name, rate, ONE_FRAME]) for rate in camera_rates],
                sequences=per_sequence,
            )
        )
    return rows


def shown(dataset: Path) -> str:
    """The dataset as the reports name it: under ``$EDGETRACK_DATA`` rather than this machine's folders."""
    return str(dataset).replace(str(DATA), "$EDGETRACK_DATA")


def environment(threads: int) -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
        "threads": threads,
    }


def render_markdown(rows: list[TrackerRow], dataset: Path, sequences: int, env: dict) -> str:
    rates = [r.camera_fps for r in rows[0].realtime]
    lines = [
        f"Dataset: {shown(dataset)} ({sequences} sequences). Machine: {env['cpu']} ({env['cores']} cores), "
        f"ONNX Runtime {env['onnxruntime']} and OpenCV {env['opencv']} on {env['threads']} thread(s).",
        "",
        "AUC: mean over sequences. strict: LAE, each frame shows the latest result done by its arrival; "
        "+1 frame: e-LAE's permitted latency of one frame. processed: share of frames after the first that the "
        "tracker updated on; behind: mean age of the shown result, in frames (strict).",
        "",
        "| tracker | offline AUC | offline fps | "
        + " | ".join(f"@{r:g} fps: AUC strict | AUC +1 frame | processed | behind" for r in rates)
        + " |",
        "|---|---|---|" + "---|---|---|---|" * len(rates),
    ]
    for row in rows:
        cells = [
            f"{rt.auc_strict:.3f} | {rt.auc_one_frame:.3f} | {rt.processed:.0%} | {rt.mean_frames_behind:.2f}"
            for rt in row.realtime
        ]
        lines.append(f"| {row.name} | {row.offline_auc:.3f} | {row.offline_fps:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(rows: list[TrackerRow], dataset: Path, sequences: int, env: dict, out: Path) -> tuple[Path, Path]:
    report = {"dataset": shown(dataset), "sequences": sequences, "environment": env, "trackers": [asdict(r) for r in rows]}
    paths = out.parent / f"{out.name}.json", out.parent / f"{out.name}.md"
    write_atomic(paths[0], json.dumps(report, indent=2) + "\n")
    write_atomic(paths[1], render_markdown(rows, dataset, sequences, env))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "trackers", nargs="*", default=list(TRACKERS), help="nanotrack-v2, a shipped student name or a bundle path"
    )
    parser.add_argument("--dataset", type=Path, default=DATA / "benchmark")
    parser.add_argument("--sequences", nargs="+", help="only these sequences of the dataset (a quick check)")
    parser.add_argument("--camera-fps", type=float, nargs="+", default=[30.0, 500.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(""))
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    sequences = load_dataset(args.dataset).sequences
    if args.sequences:
        sequences = [s for s in sequences if s.name in args.sequences]
        if not sequences:
            parser.error(f"none of {', '.join(args.sequences)} is a sequence of {args.dataset}")
    env = environment(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trackers = open_trackers(args.trackers, args.threads, Path(tmp))
        try:
            rows = run(trackers, sequences, args.camera_fps)
        finally:
            for tracker in trackers.values():
                tracker.close()
    for path in write_report(rows, args.dataset, len(sequences), env, args.out):
        print(f"wrote {path}")
    print(render_markdown(rows, args.dataset, len(sequences), env))


if __name__ == "__main__":
    main()
