"""``edgetrack build-engine``: make a bundle's fp16 or int8 models (ONNX Runtime) or its engines (TensorRT),
and keep them only when they track as well as fp32.

The candidate is built and evaluated in a temporary copy of the bundle. Only when its AUC on the evaluation
sequences is within ``max_auc_drop`` of fp32's does it enter the bundle, with its accuracy (and, for int8, the
calibration fingerprint) in the metadata; a failed build leaves the bundle exactly as it was.

Builds on one bundle may run at once (fp16 and int8 side by side): each installs its files and merges its record
into the bundle's metadata under the bundle's lock. SIGTERM unwinds a build like an exception, so that its
temporary folder goes too; a full disk or an unusable TMPDIR is one line naming the folder.
"""

from __future__ import annotations

import math
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgetrack.defaults import BUILD_BACKENDS, CALIB_FRAMES, CALIB_METHOD, MAX_AUC_DROP
from edgetrack.runtime.backends import ignore_note, open_backend
from edgetrack.runtime.bundle import PRECISIONS, Bundle, load_bundle
from edgetrack.runtime.compare import compare, sequence_crops
from edgetrack.runtime.datasets import Sequence as TrackSequence
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.errors import EdgetrackError, InputError, OutputError, SourceError
from edgetrack.runtime.evaluate import SequenceResult, track_sequence
from edgetrack.runtime.files import write_atomic
from edgetrack.runtime.progress import NO_PROGRESS, Progress
from edgetrack.runtime.records import AccuracyRecord, ParityRecord, SequenceAccuracy, worst_output
from edgetrack.runtime.tracker import SiameseTracker

from .bundle_writer import LOCK_FILE, add_precision, bundle_lock, merge_meta, os_reason, writing
from .calibration import CalibrationCrops, sample_calibration

if TYPE_CHECKING:
    from .quantize import Int8Form

#: TensorRT calibrates with its entropy calibrator v2 whatever ONNX Runtime would use.
TENSORRT_CALIB_METHOD = "entropy"


class BuildError(EdgetrackError):
    """A build that cannot run here."""


class AccuracyGateError(BuildError):
    """The built precision tracks worse than fp32 by more than the allowed AUC drop.

    It carries what the gate measured on the rejected candidate (its record, its tracking results and the size of
    its two model files), so that ``edgetrack bench`` can still report the candidate after it is thrown away.
    """

    def __init__(self, message: str, record: AccuracyRecord, results: list[SequenceResult], model_bytes: int):
        super().__init__(message)
        self.record = record
        self.results = results
        self.model_bytes = model_bytes


class BuildInterrupted(KeyboardInterrupt):
    """SIGTERM stopped the build. A KeyboardInterrupt rather than an EdgetrackError, so that code which records an
    error and carries on (``edgetrack bench``, cell by cell) lets it through to the command line, which exits with
    ``exit_code``, the shell's 128 + SIGTERM."""

    exit_code = 128 + signal.SIGTERM


class _StopOnSigterm:
    """During a build, SIGTERM raises ``BuildInterrupted`` so that every ``with`` block unwinds (the temporary
    folder is removed), where its default action would kill the process on the spot. Inside ``deferred()``, which
    holds the bundle's lock, the signal waits for the end of the block: the lock file is removed and an install
    is whole. Signal handlers belong to the main thread; a build in another thread leaves SIGTERM as it is."""

    def __init__(self, bundle: Path):
        self.bundle = bundle
        self.active = threading.current_thread() is threading.main_thread()
        self.deferring = self.installed = self.pending = False
        self.previous = None

    def __enter__(self) -> _StopOnSigterm:
        if self.active:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self.previous is None else self.previous)

    def _handle(self, signum, frame) -> None:
        if self.deferring:
            self.pending = True
        else:
            self._stop()

    def _stop(self) -> None:
        if self.installed:
            raise BuildInterrupted(f"build-engine stopped by SIGTERM after it installed the build in {self.bundle}")
        raise BuildInterrupted(f"build-engine stopped by SIGTERM; {self.bundle} is unchanged")

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending:
            self._stop()

    @contextmanager
    def install(self) -> Iterator[None]:
        with self.deferred():
            yield
            self.installed = True


@dataclass(frozen=True)
class BuildReport:
    """What a build did: the files it added to the bundle (none for ONNX Runtime fp32) and the gate's record."""

    bundle: Path
    precision: str
    backend: str
    files: list[Path]
    accuracy: AccuracyRecord | None
    note: str = ""


def resolve_backend(backend: str) -> str:
    if backend not in BUILD_BACKENDS:
        raise InputError(f"unknown build backend {backend!r} (choose from {', '.join(BUILD_BACKENDS)})")
    if backend != "auto":
        return backend
    from edgetrack.runtime.backends.tensorrt import tensorrt_available

    return "tensorrt" if tensorrt_available() else "onnxruntime"


def _sequences(sources: Sequence[Path]) -> list[tuple[Path, TrackSequence]]:
    found = []
    for source in sources:
        data = load_dataset(Path(source))
        found += [(Path(source), s) for s in data.sequences if len(s) > 1]
    if not found:
        raise SourceError(f"{', '.join(map(str, sources))}: no sequence with more than one frame to evaluate on")
    return found


def check_max_auc_drop(max_auc_drop: float) -> None:
    """The gate compares the drop with this threshold; NaN would compare false and let every candidate through."""
    if not (math.isfinite(max_auc_drop) and max_auc_drop >= 0):
        raise InputError(
            f"--max-auc-drop must be a finite number >= 0 (how much mean AUC a build may lose against fp32), got {max_auc_drop}"
        )


def gate_passes(record: AccuracyRecord) -> bool:
    """Whether the candidate's AUC drop is within the allowed one; a NaN AUC fails, since NaN compares false."""
    return record.drop <= record.max_auc_drop


def model_files(bundle: Bundle, precision: str, backend: str) -> tuple[Path, Path]:
    """The template and search files that run ``precision`` on ``backend``: ONNX models, or engines built here."""
    if backend == "tensorrt":
        from edgetrack.runtime.backends.tensorrt import engine_paths

        return engine_paths(bundle, precision)
    return bundle.model_paths(precision)


def _track(bundle: Bundle, precision: str, backend: str, sequences, progress: Progress) -> list[SequenceResult]:
    with SiameseTracker(bundle.meta, open_backend(bundle, precision, backend=backend, device="cpu"), bundle=bundle) as tracker:
        return [track_sequence(tracker, s, on_frame=lambda: progress.advance(1)) for _, s in sequences]


def output_errors(reference: Bundle, candidate: Bundle, precision: str, backend: str, sequences) -> ParityRecord:
    """How far each output of the candidate lies from fp32's (ONNX Runtime), on crops of the first sequence."""
    source, sequence = sequences[0]
    crops = sequence_crops(reference.meta, sequence, origin=f"{sequence.name} of {source}")
    with (
        open_backend(reference, "fp32", backend="onnxruntime", device="cpu") as fp32,
        open_backend(candidate, precision, backend=backend, device="cpu") as built,
    ):
        comparison = compare(fp32, built, crops)
    return comparison.record(reference="fp32 (onnxruntime)", runner=f"{precision} ({built.name})", judged=False)


def accuracy_gate(
    reference: Bundle,
    candidate: Bundle,
    precision: str,
    backend: str,
    sequences,
    max_auc_drop: float,
    progress: Progress = NO_PROGRESS,
) -> AccuracyRecord:
    """Track every sequence with fp32 (ONNX Runtime) and with the candidate, frames tracked going to ``progress``;
    raise when the mean AUC drops too far. The record carries the candidate's per-output errors against fp32, so
    that a refusal names the output that drifted."""
    progress.start(2 * sum(len(s) - 1 for _, s in sequences), f"accuracy gate fp32 vs {precision}")
    try:
        fp32 = [r.scores.auc for r in _track(reference, "fp32", "onnxruntime", sequences, progress)]
        results = _track(candidate, precision, backend, sequences, progress)
    finally:
        progress.close()
    built = [r.scores.auc for r in results]
    record = AccuracyRecord(
        auc=round(float(np.mean(built)), 4),
        fp32_auc=round(float(np.mean(fp32)), 4),
        drop=round(float(np.mean(fp32) - np.mean(built)), 4),
        max_auc_drop=max_auc_drop,
        backend=backend,
        sources=tuple(sorted({str(source) for source, _ in sequences})),
        sequences=tuple(SequenceAccuracy(s.name, round(float(a), 4), round(float(b), 4)) for (_, s), a, b in zip(sequences, fp32, built)),
        parity=output_errors(reference, candidate, precision, backend, sequences),
    )
    if not gate_passes(record):
        worst = worst_output(record.parity.outputs)
        raise AccuracyGateError(
            f"{precision} tracks with mean AUC {record.auc:.3f} against fp32's {record.fp32_auc:.3f} "
            f"on {len(sequences)} sequence(s): a drop of {record.drop:.3f} > --max-auc-drop {max_auc_drop}; "
            f"its output furthest from fp32 is {worst.name!r} (max abs {worst.max_abs:.2e}, {worst.max_rel:.2e} of its scale); "
            "the bundle is unchanged (calibrate on more or closer --calib data, or try another --calib-method)",
            record,
            results,
            sum(path.stat().st_size for path in model_files(candidate, precision, backend)),
        )
    return record


def _calibration_record(crops: CalibrationCrops, method: str, quantisation: dict | None) -> dict:
    record = {"fingerprint": crops.fingerprint, "method": method, **crops.description}
    if quantisation is not None:
        record["quantisation"] = quantisation
    return record


@contextmanager
def _temporary_writes() -> Iterator[None]:
    """Writes to the temporary folder (TMPDIR): a full disk or a folder that is missing or read-only is one line."""
    try:
        folder = tempfile.gettempdir()
    except OSError as exc:  # no candidate folder is writable
        raise OutputError(f"{os_reason(exc)}; set TMPDIR to a writable folder with free space") from None
    with writing("temporary files", Path(folder), "set TMPDIR to a writable folder with free space"):
        yield


@contextmanager
def _staging(bundle: Bundle, stop: _StopOnSigterm) -> Iterator[Bundle]:
    """A copy of the bundle in a temporary folder, where the candidate is built and gated. It is copied under the
    bundle's lock, so that it never catches another build half-way through its install."""
    with ExitStack() as scratch:
        # A SIGTERM between making the folder and owning its removal would leave it behind: it waits for both.
        with stop.deferred(), _temporary_writes():
            folder = scratch.enter_context(tempfile.TemporaryDirectory(prefix="edgetrack-build-"))
            with bundle_lock(bundle.path):
                copy = shutil.copytree(bundle.path, Path(folder) / bundle.path.name, ignore=shutil.ignore_patterns(LOCK_FILE))
        yield load_bundle(copy)


def _onnxruntime_models(
    bundle: Bundle,
    precision: str,
    crops: CalibrationCrops | None,
    calib_method: str | None,
    int8_form: Int8Form | None,
    note: Callable[[str], None] = ignore_note,
) -> tuple[dict[str, bytes], dict | None]:
    """The candidate's two model files, and the calibration record that goes with them (int8 only)."""
    try:
        from .quantize import DEFAULT_INT8, build_models, effective_form
    except ModuleNotFoundError as exc:
        raise BuildError(
            f"ONNX Runtime {precision} builds need the deploy extra ({exc.name} is missing): pip install 'edgetrack[deploy]'"
        ) from None

    method = calib_method or CALIB_METHOD
    form = effective_form(method, int8_form or DEFAULT_INT8)
    slow = " (entropy calibration searches 2048-bin histograms: a minute or more)" if crops and method == "entropy" else ""
    note(f"converting the fp32 models to {precision}{slow}")
    with _temporary_writes():
        files = build_models(bundle, precision, crops, method, form)
    return files, None if crops is None else _calibration_record(crops, method, form.describe())


def _tensorrt_engines(
    staged: Bundle, precision: str, crops: CalibrationCrops | None, workspace_mib: int, timing_cache: Path | None, note: Callable[[str], None]
) -> None:
    from .tensorrt_build import build_tensorrt_engines

    with _temporary_writes():
        build_tensorrt_engines(staged, precision, crops, workspace_mib, timing_cache, note=note)


def _install_engines(staged: Bundle, bundle: Bundle, precision: str, record: AccuracyRecord, calibration: dict | None) -> list[Path]:
    """Copy the gated engines into the bundle and record them there, under the bundle's lock. Each engine's files
    (engine, calibration table and its key) go in before its sidecar, and the old sidecar goes first: until the new
    one lands, the runtime refuses the engine instead of trusting it."""
    from edgetrack.runtime.backends.tensorrt import engine_paths, sidecar_path

    installed = []
    with bundle_lock(bundle.path), writing("the engines", bundle.path, "free space there"):
        for engine in engine_paths(staged, precision):
            sidecar = sidecar_path(engine)
            (bundle.path / sidecar.name).unlink(missing_ok=True)
            for source in [*sorted(p for p in staged.path.glob(f"{engine.name}*") if p != sidecar), sidecar]:
                write_atomic(bundle.path / source.name, source.read_bytes())
                installed.append(bundle.path / source.name)
        merge_meta(bundle.path, precision, accuracy=record, calibration=calibration)
    return installed


def build_engine(
    bundle_path: Path,
    precision: str,
    backend: str = "auto",
    calib: Sequence[Path] = (),
    calib_frames: int = CALIB_FRAMES,
    calib_method: str | None = None,
    workspace_mib: int = 1024,
    timing_cache: Path | None = None,
    max_auc_drop: float = MAX_AUC_DROP,
    eval_sources: Sequence[Path] = (),
    int8_form: Int8Form | None = None,
    note: Callable[[str], None] = ignore_note,
    progress: Progress = NO_PROGRESS,
) -> BuildReport:
    """Build ``precision`` for ``backend`` and gate it on accuracy; see the module docstring. One-line messages go
    to ``note``, calibration and gate progress to ``progress``."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    check_max_auc_drop(max_auc_drop)
    bundle = load_bundle(bundle_path)
    backend = resolve_backend(backend)
    if backend == "tensorrt":
        from edgetrack.runtime.backends.tensorrt import machine_fingerprint

        # Fail before minutes of calibration and tracking, with the runtime's line on how to get TensorRT.
        machine_fingerprint()
        if calib_method not in (None, TENSORRT_CALIB_METHOD):
            raise InputError(f"TensorRT calibrates with its entropy calibrator; drop --calib-method {calib_method}")
    elif timing_cache is not None:
        note("note: --timing-cache applies to TensorRT builds only; ignored")
    if backend == "onnxruntime" and precision == "fp32":
        return BuildReport(bundle.path, precision, backend, [], None, "ONNX Runtime runs the bundle's fp32 models as they are: nothing to build")
    if precision == "int8" and not calib:
        raise InputError("int8 needs calibration data: give --calib with a sequence folder, a folder of sequences or a video (with ground truth)")
    sources = list(eval_sources) or list(calib)
    if not sources:
        raise InputError(f"the accuracy gate needs sequences to compare {precision} with fp32 on: give --eval (or --calib)")
    sequences = _sequences(sources)

    with _StopOnSigterm(bundle.path) as stop:
        crops = sample_calibration(bundle, list(calib), frames=calib_frames, note=note, progress=progress) if precision == "int8" else None
        with _staging(bundle, stop) as staged:
            if backend == "onnxruntime":
                files, calibration = _onnxruntime_models(bundle, precision, crops, calib_method, int8_form, note)
                staged = add_precision(staged, precision, files)
                record = accuracy_gate(bundle, staged, precision, backend, sequences, max_auc_drop, progress)
                with stop.install():
                    bundle = add_precision(bundle, precision, files, record, calibration)
                return BuildReport(bundle.path, precision, backend, [bundle.path / name for name in files], record)

            _tensorrt_engines(staged, precision, crops, workspace_mib, timing_cache, note)
            record = accuracy_gate(bundle, staged, precision, backend, sequences, max_auc_drop, progress)
            calibration = None if crops is None else _calibration_record(crops, TENSORRT_CALIB_METHOD, None)
            with stop.install():
                installed = _install_engines(staged, bundle, precision, record, calibration)
            return BuildReport(bundle.path, precision, backend, installed, record)
