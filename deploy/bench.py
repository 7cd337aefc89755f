"""``edgetrack bench``: every precision x backend cell of one bundle, built where missing, tracked on one dataset.

Each cell is one precision on one backend. A precision the bundle already holds for that backend runs as it is;
a missing one goes through ``build_engine``, accuracy gate included. Then every sequence of the dataset is tracked
by the runtime's own tracker, after a short untimed warm-up so that the first cell pays no more first-run
allocation than the others. AUC is the mean over sequences and fps is all updated frames over all update time,
as ``edgetrack eval`` reports them.

One timed pass of a cell varies by a third on a shared machine, so the timing is repeated over ``rounds``: in each
round every cell tracks the whole dataset once, the cells taking turns in a rotated order, and a cell's fps is its
median over the rounds. Noise then hits every cell alike instead of whichever happened to run during it.

A cell ends in one of three states: ``ok``; ``gate_failed`` (built, but it tracks too far below fp32, so it was
not kept: its AUC, size and speed are the gate's measurements of the rejected candidate); ``build_failed`` (it
could not be built or run here, with the one-line reason, e.g. TensorRT missing).

``--compare opencv-nano`` adds OpenCV's ``cv2.TrackerNano`` (see ``opencv_nano``) as a reference row, tracked and
timed on the same frames from the same first boxes; when it cannot run, the row says why.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from edgetrack.defaults import BENCH_BACKENDS, BENCH_DEFAULT_BACKENDS, BENCH_ROUNDS, CALIB_FRAMES, MAX_AUC_DROP
from edgetrack.runtime.backends import ignore_note, open_backend
from edgetrack.runtime.bundle import METADATA_FILE, PRECISIONS, Bundle, load_bundle
from edgetrack.runtime.datasets import Sequence as TrackSequence
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.environment import describe_environment
from edgetrack.runtime.errors import EdgetrackError, InputError, OutputError, SourceError
from edgetrack.runtime.evaluate import SequenceResult, summarise, track_sequence
from edgetrack.runtime.files import write_atomic
from edgetrack.runtime.output_folder import make_writable
from edgetrack.runtime.progress import NO_PROGRESS, Progress
from edgetrack.runtime.tracker import SiameseTracker

from .build_engine import (
    AccuracyGateError,
    BuildError,
    build_engine,
    check_max_auc_drop,
    model_files,
)
from .opencv_nano import OPENCV_NANO, OpenCVNanoTracker, TrackerNanoUnavailable, check_pair, published_pair

BENCH_TOOL = "edgetrack bench"
STATUS_LABELS = {"ok": "✅ ok", "gate_failed": "❎ gate", "build_failed": "❌ failed"}
LEGEND = "✅ ok · ❎ built, but failed the accuracy gate, so not kept · ❌ could not be built or run here"
#: Untimed updates before each cell's timed pass: first runs of a fresh session allocate and are several times slower.
WARMUP_FRAMES = 10
BYTES_PER_MB = 1e6


@dataclass(frozen=True)
class BenchCell:
    """One precision on one backend (or the OpenCV reference row), and what the bench measured of it."""

    backend: str
    precision: str
    status: str
    #: why a cell is not ok, in one line; for the reference row, which pair it ran
    reason: str = ""
    size_mb: float | None = None
    auc: float | None = None
    ms_per_frame: float | None = None
    fps: float | None = None
    #: whether this bench built it (False: the bundle already held it, or it could not be built)
    built: bool = False
    #: sequence name -> AUC
    sequences: dict[str, float] = field(default_factory=dict)
    #: fps of each timed round, in round order; ``fps`` is their median
    fps_rounds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class BenchReport:
    """What ``bench.json`` holds."""

    bundle: str
    bundle_path: str
    dataset: str
    #: name and frame count of each tracked sequence
    sequences: list[dict]
    max_auc_drop: float
    calib: list[str]
    threads: int | None
    environment: dict
    cells: list[BenchCell]
    reference: BenchCell | None = None
    rounds: int = 1


@dataclass(frozen=True)
class OpenCVNanoCompare:
    """``--compare opencv-nano[=BACKBONE,HEAD]``: the pair to give TrackerNano, or None to find the bundle's own."""

    pair: tuple[Path, Path] | None = None


@dataclass(frozen=True)
class BenchPlan:
    """Everything a bench needs besides the bundle, checked before any work starts."""

    dataset: Path
    sequences: list[TrackSequence]
    out: Path
    precisions: tuple[str, ...] = PRECISIONS
    backends: tuple[str, ...] = BENCH_DEFAULT_BACKENDS
    calib: tuple[Path, ...] = ()
    calib_frames: int = CALIB_FRAMES
    max_auc_drop: float = MAX_AUC_DROP
    threads: int | None = None
    compare: OpenCVNanoCompare | None = None
    rounds: int = BENCH_ROUNDS


def parse_names(text: str, known: Sequence[str], option: str) -> tuple[str, ...]:
    """``fp32,int8`` -> ``("fp32", "int8")``, in the given order without repeats; an unknown name is an error."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        what = f"unknown {', '.join(map(repr, unknown))} in" if unknown else "nothing in"
        raise InputError(f"{what} {option} {text!r}: give a comma-separated list of {', '.join(known)}")
    return names


def parse_compare(text: str) -> OpenCVNanoCompare:
    """``opencv-nano`` or ``opencv-nano=BACKBONE.onnx,HEAD.onnx``."""
    name, _, pair = text.partition("=")
    if name.strip() != OPENCV_NANO:
        raise InputError(f"unknown --compare {text!r}: the one reference is {OPENCV_NANO}[=BACKBONE.onnx,HEAD.onnx]")
    if not pair:
        return OpenCVNanoCompare()
    files = [p.strip() for p in pair.split(",")]
    if len(files) != 2 or not all(files):
        raise InputError(f"--compare {text!r}: give the pair as {OPENCV_NANO}=BACKBONE.onnx,HEAD.onnx")
    return OpenCVNanoCompare((Path(files[0]), Path(files[1])))


def plan_bench(
    dataset: Path,
    out: Path,
    precisions: Sequence[str] = PRECISIONS,
    backends: Sequence[str] = BENCH_DEFAULT_BACKENDS,
    calib: Sequence[Path] = (),
    calib_frames: int = CALIB_FRAMES,
    max_auc_drop: float = MAX_AUC_DROP,
    threads: int | None = None,
    compare: OpenCVNanoCompare | None = None,
    rounds: int = BENCH_ROUNDS,
    note: Callable[[str], None] = ignore_note,
) -> BenchPlan:
    """Check names, data and the output folder, so that a typo fails at once rather than after minutes of builds.
    Sequences the dataset skips go to ``note``."""

    if rounds < 1:
        raise InputError(f"--rounds must be at least 1, got {rounds}")
    check_max_auc_drop(max_auc_drop)
    precisions = parse_names(",".join(precisions), PRECISIONS, "--precisions")
    backends = parse_names(",".join(backends), BENCH_BACKENDS, "--backends")
    data = load_dataset(Path(dataset))
    for name, reason in data.skipped:
        note(f"skipping {name}: {reason}")
    sequences = [s for s in data.sequences if len(s) > 1]
    if not sequences:
        raise SourceError(f"{dataset}: no sequence with more than one frame to track")
    for source in calib:
        load_dataset(Path(source))
    make_writable(Path(out), "--out")
    return BenchPlan(
        dataset=Path(dataset),
        sequences=sequences,
        out=Path(out),
        precisions=precisions,
        backends=backends,
        calib=tuple(Path(c) for c in calib),
        calib_frames=calib_frames,
        max_auc_drop=max_auc_drop,
        threads=threads,
        compare=compare,
        rounds=rounds,
    )


def export_preset(name: str, weights: Path | None, plan: BenchPlan, note: Callable[[str], None] = ignore_note) -> Path:
    """Export a zoo preset to ``OUT/NAME.etb`` as ``edgetrack export`` does (replacing an earlier export, so the
    bench always measures the weights it was given), with parity checked on the bench's own dataset. The export
    is announced to ``note``."""
    try:
        from .export import export_model, load_model
    except ModuleNotFoundError as exc:
        raise BuildError(
            f"bench --model exports from torch and needs the train and deploy extras ({exc.name} is missing): "
            "pip install 'edgetrack[train,deploy]', or bench an existing bundle"
        ) from None
    note(f"bench: exporting {name} to {plan.out / f'{name}.etb'}")
    bundle = export_model(load_model(name, weights), plan.out / f"{name}.etb", parity_data=plan.dataset, force=True, weights=weights)
    return bundle.path


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _holds(bundle: Bundle, precision: str, backend: str) -> bool:
    if backend == "onnxruntime":
        return precision in bundle.meta.models
    return all(path.exists() for path in model_files(bundle, precision, backend))


def _warm_up(tracker, sequence: TrackSequence) -> None:
    frames = sequence.frames()
    tracker.init(next(frames), sequence.groundtruth[0])
    for frame in itertools.islice(frames, WARMUP_FRAMES):
        tracker.update(frame)


def _fps(results: list[SequenceResult]) -> float | None:
    fps = summarise(results).mean.fps
    return fps if math.isfinite(fps) else None


def _measured(backend: str, precision: str, status: str, results: list[SequenceResult], size_bytes: int, fps_rounds=(), **rest) -> BenchCell:
    """A cell from its first round's tracking results (AUC) and every round's fps (speed: their median)."""
    fps_rounds = [f for f in fps_rounds if f is not None] or [f for f in [_fps(results)] if f is not None]
    fps = statistics.median(fps_rounds) if fps_rounds else None
    return BenchCell(
        backend=backend,
        precision=precision,
        status=status,
        size_mb=size_bytes / BYTES_PER_MB,
        auc=summarise(results).mean.auc,
        ms_per_frame=1000 / fps if fps else None,
        fps=fps,
        sequences={r.name: r.scores.auc for r in results},
        fps_rounds=list(fps_rounds),
        **rest,
    )


def _build(bundle_path: Path, precision: str, backend: str, plan: BenchPlan, note: Callable[[str], None], progress: Progress) -> None:
    note(f"bench: building {precision} for {backend}")
    build_engine(
        bundle_path,
        precision,
        backend=backend,
        calib=list(plan.calib) or [plan.dataset],
        calib_frames=plan.calib_frames,
        max_auc_drop=plan.max_auc_drop,
        eval_sources=[plan.dataset],
        note=note,
        progress=progress,
    )


@dataclass
class _Runnable:
    """A cell ready to be timed: its tracker, what it is, and the results of each round."""

    backend: str
    precision: str
    tracker: object
    size_bytes: int
    close: Callable[[], None]
    reason: str = ""
    built: bool = False
    rounds: list[list[SequenceResult]] = field(default_factory=list)

    def cell(self) -> BenchCell:
        return _measured(
            self.backend, self.precision, "ok", self.rounds[0], self.size_bytes, [_fps(r) for r in self.rounds], reason=self.reason, built=self.built
        )


def prepare_cell(
    bundle_path: Path,
    precision: str,
    backend: str,
    plan: BenchPlan,
    note: Callable[[str], None] = ignore_note,
    progress: Progress = NO_PROGRESS,
) -> _Runnable | BenchCell:
    """Build ``precision`` for ``backend`` when the bundle lacks it and open it; a finished cell when it failed.
    The build reports to ``note`` and ``progress``."""
    built = not _holds(load_bundle(bundle_path), precision, backend)
    if built:
        try:
            _build(bundle_path, precision, backend, plan, note, progress)
        except AccuracyGateError as exc:
            r = exc.record
            reason = (
                f"accuracy gate: mean AUC {r.auc:.3f} vs fp32 {r.fp32_auc:.3f}, a drop of {r.drop:.3f} > "
                f"{plan.max_auc_drop}; not kept (speed timed once, during the gate)"
            )
            return _measured(backend, precision, "gate_failed", exc.results, exc.model_bytes, reason=reason, built=True)
        except EdgetrackError as exc:
            return BenchCell(backend, precision, "build_failed", reason=_one_line(exc))
        except OSError as exc:
            return BenchCell(backend, precision, "build_failed", reason=f"cannot write into {bundle_path}: {exc.strerror or exc}")
    bundle = load_bundle(bundle_path)
    try:
        runner = open_backend(bundle, precision, backend=backend, device="cpu", threads=plan.threads)
    except EdgetrackError as exc:
        return BenchCell(backend, precision, "build_failed", reason=f"cannot run: {_one_line(exc)}")
    size = sum(path.stat().st_size for path in model_files(bundle, precision, backend))
    tracker = SiameseTracker(bundle.meta, runner, bundle=bundle)
    return _Runnable(backend, precision, tracker, size, tracker.close, built=built)


def prepare_reference(bundle: Bundle, plan: BenchPlan) -> _Runnable | BenchCell:
    """cv2.TrackerNano on the same frames from the same first boxes, checked on the first sequence; a row with the
    reason when it cannot run."""
    try:
        backbone, head = check_pair(*(plan.compare.pair or published_pair(bundle)))
        tracker = OpenCVNanoTracker(backbone, head)
        try:
            _warm_up(tracker, plan.sequences[0])
        except cv2.error as exc:
            message = _one_line(getattr(exc, "err", "") or str(exc))
            raise TrackerNanoUnavailable(
                f"cv2.TrackerNano cannot run {backbone.name} + {head.name} ({message}); it takes NanoTrack v1/v2 pairs only"
            ) from None
    except TrackerNanoUnavailable as exc:
        return BenchCell(OPENCV_NANO, "fp32", "build_failed", reason=str(exc))
    size = backbone.stat().st_size + head.stat().st_size
    return _Runnable(OPENCV_NANO, "fp32", tracker, size, lambda: None, reason=f"cv2.TrackerNano with {backbone} + {head}")


def time_rounds(runnables: list[_Runnable], plan: BenchPlan, progress: Progress = NO_PROGRESS) -> None:
    """Track the dataset with every runnable once per round, in an order rotated each round; each pass is one
    ``progress`` task."""
    threads = cv2.getNumThreads()
    if plan.threads:
        cv2.setNumThreads(plan.threads)  # TrackerNano runs on OpenCV's DNN and its thread pool
    try:
        for r in range(plan.rounds):
            order = runnables[r % len(runnables):] + runnables[: r % len(runnables)]
            for runnable in order:
                label = f"bench round {r + 1}/{plan.rounds} {runnable.backend} {runnable.precision}"
                runnable.rounds.append(_track_all(runnable.tracker, plan.sequences, label, progress))
    finally:
        cv2.setNumThreads(threads)


def _track_all(tracker, sequences: list[TrackSequence], label: str, progress: Progress) -> list[SequenceResult]:
    """Warm up, then track every sequence once from its first ground-truth box."""
    _warm_up(tracker, sequences[0])
    progress.start(sum(len(s) - 1 for s in sequences), label)
    try:
        return [track_sequence(tracker, s, on_frame=lambda: progress.advance(1)) for s in sequences]
    finally:
        progress.close()


def run_bench(
    bundle_path: Path, plan: BenchPlan, note: Callable[[str], None] = ignore_note, progress: Progress = NO_PROGRESS
) -> BenchReport:
    """Every cell of ``plan.backends`` x ``plan.precisions``, then the reference row when asked for; builds and
    timed passes report to ``note`` and ``progress``."""
    bundle_path = load_bundle(bundle_path).path
    prepared = [
        prepare_cell(bundle_path, precision, backend, plan, note, progress) for backend in plan.backends for precision in plan.precisions
    ]
    bundle = load_bundle(bundle_path)
    if plan.compare:
        prepared.append(prepare_reference(bundle, plan))
    runnables = [p for p in prepared if isinstance(p, _Runnable)]
    try:
        if runnables:
            time_rounds(runnables, plan, progress)
    finally:
        for runnable in runnables:
            runnable.close()
    rows = [p.cell() if isinstance(p, _Runnable) else p for p in prepared]
    return BenchReport(
        bundle=bundle.meta.name,
        bundle_path=str(bundle_path),
        dataset=str(plan.dataset),
        sequences=[{"name": s.name, "frames": len(s)} for s in plan.sequences],
        max_auc_drop=plan.max_auc_drop,
        calib=[str(c) for c in plan.calib] or [str(plan.dataset)],
        threads=plan.threads,
        environment=describe_environment(",".join(plan.backends), plan.threads),
        cells=rows[: len(rows) - bool(plan.compare)],
        reference=rows[-1] if plan.compare else None,
        rounds=plan.rounds,
    )


def _rows(report: BenchReport) -> list[BenchCell]:
    return [*report.cells, *([report.reference] if report.reference else [])]


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _values(cell: BenchCell) -> list[str]:
    return [_number(cell.size_mb, 2), _number(cell.auc, 3), _number(cell.ms_per_frame, 2), _number(cell.fps, 0)]


def render_text(report: BenchReport) -> str:
    """The table the command prints; not-ok rows end with their reason."""
    # Each status label starts with one emoji that a terminal draws two cells wide: the header gets that cell back.
    lines = [f"{'backend':<13}{'precision':<11}{'status':<11}{'size MB':>9}{'AUC':>8}{'ms/frame':>10}{'FPS':>8}"]
    for cell in _rows(report):
        size, auc, ms, fps = _values(cell)
        line = f"{cell.backend:<13}{cell.precision:<11}{STATUS_LABELS[cell.status]:<10}{size:>9}{auc:>8}{ms:>10}{fps:>8}"
        lines.append(f"{line}  {cell.reason}" if cell.status != "ok" else line)
    return "\n".join(lines)


def render_markdown(report: BenchReport) -> str:
    """``bench.md``: the table, the legend, and the AUC of every sequence."""
    names = [s["name"] for s in report.sequences]
    frames = sum(s["frames"] for s in report.sequences)
    lines = [
        f"# Bench: {report.bundle}",
        "",
        f"Dataset `{report.dataset}`: {len(names)} sequence(s), {frames} frames, tracked by every cell in each of "
        f"{report.rounds} round(s), cells taking turns, each pass after a {WARMUP_FRAMES}-frame warm-up; FPS is the "
        f"median over the rounds. Accuracy gate: at most {report.max_auc_drop} below fp32's mean AUC. "
        f"CPU: {report.environment.get('cpu')}, {report.environment.get('cores')} cores; "
        f"ONNX Runtime threads: {report.threads or 'its default'}.",
        "",
        "| backend | precision | status | size MB | AUC | ms/frame | FPS | note |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for cell in _rows(report):
        note = cell.reason.replace("|", "\\|")
        lines.append(f"| {cell.backend} | {cell.precision} | {STATUS_LABELS[cell.status]} | {' | '.join(_values(cell))} | {note} |")
    lines += ["", LEGEND, "", "AUC per sequence:", "", f"| backend | precision | {' | '.join(names)} |", "|---|---|" + "---:|" * len(names)]
    for cell in _rows(report):
        aucs = [_number(cell.sequences.get(name), 3) for name in names]
        lines.append(f"| {cell.backend} | {cell.precision} | {' | '.join(aucs)} |")
    return "\n".join(lines) + "\n"


def previous_bench(folder: Path) -> set[str]:
    """What a bench folder written before manifests holds: its report and the bundles ``--model`` exported."""
    bundles = {p.name for p in folder.glob("*.etb") if (p / METADATA_FILE).is_file()}
    return {"bench.json", "bench.md", *bundles} if (folder / "bench.json").is_file() else set()


def write_report(report: BenchReport, out: Path, name: str = "bench") -> tuple[Path, Path]:
    """Write ``out/NAME.json`` and ``out/NAME.md``, each in one rename."""
    paths = out / f"{name}.json", out / f"{name}.md"
    try:
        write_atomic(paths[0], json.dumps(dataclasses.asdict(report), indent=2, ensure_ascii=False) + "\n")
        write_atomic(paths[1], render_markdown(report))
    except OSError as exc:
        raise OutputError(f"cannot write the bench report to {out}: {exc.strerror or exc}; choose another --out") from None
    return paths
