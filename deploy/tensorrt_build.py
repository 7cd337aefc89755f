"""Build a bundle's TensorRT engines on the device that will run them.

Engines are never shipped (see DESIGN.md, "The bundle"): ``edgetrack build-engine`` compiles the bundle's fp32
ONNX pair here into ``template.<precision>.engine`` and ``search.<precision>.engine``, each with the sidecar the
runtime's TensorRT backend checks before it loads an engine.

TensorRT and pycuda are imported inside ``build_tensorrt_engines`` only. Everything that does not need them (the
builder flags per precision, the calibration feeding, the calibration-cache rule, the file writing) is plain
Python here, so it is tested on machines without a GPU. Written against the TensorRT 8.6+ Python API.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetrack.runtime.backends import ignore_note
from edgetrack.runtime.backends.tensorrt import (
    EngineSidecar,
    _logger,
    engine_paths,
    import_tensorrt,
    machine_fingerprint,
    sidecar_path,
)
from edgetrack.runtime.bundle import PRECISIONS, Bundle, ModelIO, check_io
from edgetrack.runtime.errors import BackendError, BundleError
from edgetrack.runtime.files import stage, write_atomic

if TYPE_CHECKING:
    from .calibration import CalibrationCrops


@dataclass(frozen=True)
class BuildPlan:
    """What one precision asks of the builder, by ``trt.BuilderFlag`` member name."""

    set_flags: tuple[str, ...]
    clear_flags: tuple[str, ...]
    calibrate: bool


def build_plan(precision: str) -> BuildPlan:
    if precision == "fp32":
        # The fp32 engine is the reference the other precisions are judged against, and TF32 (on by default on
        # Ampere and later, Jetson Orin included) rounds convolution inputs to a 10-bit mantissa.
        return BuildPlan(set_flags=(), clear_flags=("TF32",), calibrate=False)
    if precision == "fp16":
        return BuildPlan(set_flags=("FP16",), clear_flags=(), calibrate=False)
    if precision == "int8":
        # Layers without an int8 kernel fall back to the fastest other type; with FP16 set that is half, not float.
        return BuildPlan(set_flags=("INT8", "FP16"), clear_flags=(), calibrate=True)
    raise BackendError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")


def network_creation_flags(tensorrt_version: str) -> tuple[str, ...]:
    """The ``trt.NetworkDefinitionCreationFlag`` members to set for this TensorRT version."""
    major = int(re.match(r"\d+", tensorrt_version).group())
    # TensorRT 8 needs explicit batch asked for; TensorRT 10 has nothing else and deprecates the flag.
    return ("EXPLICIT_BATCH",) if major < 10 else ()


def dynamic_input_shapes(network: ModelIO, bundle: ModelIO) -> dict[str, tuple[int, ...]]:
    """The inputs the parsed network leaves dynamic (``None`` dimensions), with the one shape the bundle fixes.

    Bundle models have fixed shapes, so this is empty unless an exporter left a dimension symbolic; those inputs
    get an optimization profile whose minimum, optimum and maximum are that shape.
    """
    return {name: bundle.inputs[name] for name, shape in network.inputs.items() if None in shape}


class CalibrationFeed:
    """One model's calibration crops, checked against its inputs and handed out one batch at a time.

    Each crop is a complete input dict of the model (the search model's includes the template features), so one
    crop is one calibration batch, at the batch size the model's fixed shapes carry.
    """

    def __init__(self, model: str, feeds: Sequence[Mapping[str, np.ndarray]], io: ModelIO):
        if not feeds:
            raise BackendError(f"no calibration crops for the {model} model: int8 needs crops from --calib sequences or videos")
        batches = []
        for index, feed in enumerate(feeds):
            extra = sorted(set(feed) - set(io.inputs))
            if extra:
                raise BackendError(
                    f"calibration crop {index} of the {model} model has inputs {extra} the model does not take "
                    f"(it takes {sorted(io.inputs)})"
                )
            batch = {}
            for name, shape in io.inputs.items():
                if name not in feed:
                    raise BackendError(f"calibration crop {index} of the {model} model lacks input {name!r}")
                array = np.ascontiguousarray(feed[name], dtype=np.float32)
                if array.shape != tuple(shape):
                    raise BackendError(
                        f"calibration crop {index} of the {model} model has {name!r} of shape {array.shape}, "
                        f"the model takes {tuple(shape)}"
                    )
                batch[name] = array
            batches.append(batch)
        self.model = model
        self._batches = batches
        self._next = 0

    def __len__(self) -> int:
        return len(self._batches)

    def nbytes(self, name: str) -> int:
        return self._batches[0][name].nbytes

    def next_batch(self, names: Sequence[str]) -> list[np.ndarray] | None:
        """The next crop's arrays in the order of ``names`` (TensorRT's order), or ``None`` when all were given."""
        if self._next == len(self._batches):
            return None
        batch = self._batches[self._next]
        unknown = [name for name in names if name not in batch]
        if unknown:
            raise BackendError(f"TensorRT asks calibration data for {unknown}, the {self.model} model has {sorted(batch)}")
        self._next += 1
        return [batch[name] for name in names]


def calibration_cache_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".calib")


@dataclass(frozen=True)
class CalibrationCache:
    """TensorRT's calibration table for one engine, ``<engine>.calib``, and the key it was made under.

    The key (calibration fingerprint, source model digest, TensorRT version) sits in ``<engine>.calib.json``;
    the table is reused only when the key is exactly the current one, since scales calibrated on other crops or
    another model would quietly cost accuracy.
    """

    path: Path
    key: Mapping[str, str]

    @property
    def key_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def read(self) -> bytes | None:
        """The table if it was made under this key, else ``None`` (calibrate again)."""
        try:
            stored = json.loads(self.key_path.read_text())
            table = self.path.read_bytes()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return table if stored == dict(self.key) else None

    def write(self, table: bytes) -> None:
        # The old key goes first: a crash between the two writes then leaves a table no key vouches for, which
        # read() ignores, never a new table under an old key.
        self.key_path.unlink(missing_ok=True)
        write_atomic(self.path, table)
        write_atomic(self.key_path, (json.dumps(dict(self.key), indent=2) + "\n").encode())


def install_engines(engines: Sequence[tuple[Path, Any, str]]) -> None:
    """Put each ``(engine path, serialized engine, sidecar JSON)`` in place, all or nothing as far as files allow.

    Everything is written to temporary files first, so a full disk fails before any old engine is touched. Then
    each old sidecar is removed before its engine is replaced: an interruption leaves at worst an engine without
    a sidecar, which the runtime refuses with a rebuild hint, never an engine vouched for by another's sidecar.
    """
    staged: list[Path] = []
    try:
        moves = []
        for engine, plan, sidecar in engines:
            staged += [stage(engine, plan), stage(sidecar_path(engine), sidecar.encode())]
            moves.append((engine, *staged[-2:]))
        for engine, engine_temporary, sidecar_temporary in moves:
            sidecar_path(engine).unlink(missing_ok=True)
            os.replace(engine_temporary, engine)
            os.replace(sidecar_temporary, sidecar_path(engine))
    finally:
        for temporary in staged:
            temporary.unlink(missing_ok=True)


def read_timing_cache(path: Path | None) -> bytes:
    """The serialized timing cache at ``path``; empty (a fresh cache) when there is none yet."""
    if path is None or not path.exists():
        return b""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BackendError(f"cannot read the timing cache {path}: {exc.strerror or exc}") from None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _network_io(network: Any) -> ModelIO:
    def shapes(count: int, get: Any) -> dict[str, tuple[int | None, ...]]:
        tensors = [get(i) for i in range(count)]
        return {t.name: tuple(d if d >= 0 else None for d in t.shape) for t in tensors}

    return ModelIO(
        inputs=shapes(network.num_inputs, network.get_input),
        outputs=shapes(network.num_outputs, network.get_output),
    )


class _TimingCache:
    """The timing cache carried from one build to the next, starting from the file's content."""

    def __init__(self, path: Path | None, data: bytes, note: Callable[[str], None] = ignore_note):
        self.path = path
        self.data = data
        self.note = note
        self._cache: Any = None

    def attach(self, config: Any) -> None:
        cache = config.create_timing_cache(self.data)
        # ignore_mismatch=False: timings measured on another GPU or TensorRT version would pick slow tactics here.
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            self.note(f"edgetrack: the timing cache {self.path} was made by another TensorRT or GPU; starting a new one")
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, ignore_mismatch=False)
        self._cache = cache

    def keep(self) -> None:
        self.data = bytes(memoryview(self._cache.serialize()))


def _entropy_calibrator(trt: Any, cuda: Any, feed: CalibrationFeed, cache: CalibrationCache) -> Any:
    """An entropy calibrator v2 that copies ``feed`` to the GPU batch by batch and keeps its table in ``cache``."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            #: An exception raised inside a callback, re-raised after the build: TensorRT cannot carry it out.
            self.error: BaseException | None = None
            self._buffers: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            # Each crop carries the batch dimension of the model's fixed input shapes, and with explicit batch
            # TensorRT takes the batch from those shapes: one get_batch call is one crop.
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                arrays = feed.next_batch(names)
                if arrays is None:
                    return None
                for name, array in zip(names, arrays):
                    if name not in self._buffers:
                        self._buffers[name] = cuda.mem_alloc(feed.nbytes(name))
                    cuda.memcpy_htod(self._buffers[name], array)
                return [int(self._buffers[name]) for name in names]
            except Exception as exc:
                self.error = exc
                return None

        def read_calibration_cache(self) -> bytes | None:
            return cache.read()

        def write_calibration_cache(self, table: Any) -> None:
            # After a failed get_batch TensorRT still hands over a table, made from only part of the crops.
            if self.error is not None:
                return
            try:
                cache.write(bytes(memoryview(table)))
            except OSError as exc:
                self.error = BackendError(f"cannot write the calibration cache {cache.path}: {exc.strerror or exc}")

        def free(self) -> None:
            for buffer in self._buffers.values():
                buffer.free()
            self._buffers.clear()

    return EntropyCalibrator()


def _serialize_engine(
    trt: Any,
    onnx_path: Path,
    onnx_bytes: bytes,
    io: ModelIO,
    plan: BuildPlan,
    workspace_bytes: int,
    timing: _TimingCache,
    calibrator: Any,
) -> Any:
    """Parse one ONNX model and build its serialized engine; one ``BackendError`` line on any failure."""
    logger = _logger()
    builder = trt.Builder(logger)
    flags = 0
    for name in network_creation_flags(trt.__version__):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(_one_line(parser.get_error(i)) for i in range(parser.num_errors)) or "no reason given"
        raise BackendError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: {errors}; "
            "a newer TensorRT may support these operators, or use `--backend onnxruntime`"
        )
    network_io = _network_io(network)
    check_io(onnx_path, io, network_io)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for name in plan.set_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.clear_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    dynamic = dynamic_input_shapes(network_io, io)
    if dynamic:
        profile = builder.create_optimization_profile()
        for name, shape in dynamic.items():
            profile.set_shape(name, shape, shape, shape)
        config.add_optimization_profile(profile)
        if calibrator is not None:
            config.set_calibration_profile(profile)
    if calibrator is not None:
        config.int8_calibrator = calibrator
    timing.attach(config)

    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None and calibrator.error is not None:
        error = calibrator.error
        if isinstance(error, BackendError):
            raise error
        raise BackendError(f"int8 calibration of {onnx_path.name} failed: {_one_line(error)}")
    if serialized is None:
        raise BackendError(
            f"TensorRT could not build an engine from {onnx_path.name} (see its log above); "
            f"if it mentions memory, raise --workspace (now {workspace_bytes >> 20} MiB)"
        )
    timing.keep()
    return serialized


def build_tensorrt_engines(
    bundle: Bundle,
    precision: str,
    calibration: CalibrationCrops | None = None,
    workspace_mib: int = 1024,
    timing_cache: Path | None = None,
    note: Callable[[str], None] = ignore_note,
) -> tuple[Path, Path]:
    """Build the template and search engines of ``precision`` from the bundle's fp32 models, on this machine.

    int8 needs ``calibration`` (crops for both models); its tables are kept beside the engines as
    ``<engine>.calib`` and reused while the calibration fingerprint, the model and TensorRT stay the same.
    ``timing_cache`` names a file that carries layer timings across builds; it is created when missing.
    Returns the engine paths. On failure no engine or sidecar is changed. What it is building goes to ``note``.
    """
    plan = build_plan(precision)
    if plan.calibrate and calibration is None:
        raise BackendError(
            "int8 engines need calibration crops: give --calib sequences or videos like the ones the tracker will see"
        )
    if not isinstance(workspace_mib, int) or workspace_mib <= 0:
        raise BackendError(f"the workspace must be a positive number of MiB, not {workspace_mib!r}")
    meta = bundle.meta
    onnx_paths = bundle.model_paths("fp32")
    files = meta.models["fp32"]
    engines = engine_paths(bundle, precision)
    models = [
        (onnx_paths[0], files.template, meta.template_io, engines[0]),
        (onnx_paths[1], files.search, meta.search_io, engines[1]),
    ]
    feeds = (
        [
            CalibrationFeed("template", calibration.template_feeds, meta.template_io),
            CalibrationFeed("search", calibration.search_feeds, meta.search_io),
        ]
        if plan.calibrate
        else [None, None]
    )
    timing = _TimingCache(timing_cache, read_timing_cache(timing_cache), note)

    trt, cuda = import_tensorrt()
    machine = machine_fingerprint()
    # The primary context is the one TensorRT's CUDA runtime uses, so the calibrator's pycuda buffers live there.
    context = cuda.Device(0).retain_primary_context()
    context.push()
    try:
        built = []
        for number, ((onnx_path, onnx_file, io, engine), feed) in enumerate(zip(models, feeds), start=1):
            onnx_bytes = onnx_path.read_bytes()
            if hashlib.sha256(onnx_bytes).hexdigest() != meta.files[onnx_file]:
                raise BundleError(
                    f"bundle file {onnx_path} does not match its sha256: it is corrupt or was modified; re-export it"
                )
            calibrator = None
            how = precision
            if feed is not None:
                cache = CalibrationCache(
                    calibration_cache_path(engine),
                    {
                        "calibration": calibration.fingerprint,
                        "onnx_sha256": meta.files[onnx_file],
                        "tensorrt": trt.__version__,
                    },
                )
                calibrator = _entropy_calibrator(trt, cuda, feed, cache)
                reused = cache.read() is not None
                how += f", reusing {cache.path.name}" if reused else f", calibrating on {len(feed)} crops"
            note(
                f"edgetrack: building {engine.name} from {onnx_file} ({number}/{len(models)}, {how}); "
                "this takes minutes on a Jetson"
            )
            try:
                serialized = _serialize_engine(trt, onnx_path, onnx_bytes, io, plan, workspace_mib << 20, timing, calibrator)
            finally:
                if calibrator is not None:
                    calibrator.free()
            sidecar = EngineSidecar.for_machine(machine, precision, io, onnx_file, meta.files[onnx_file])
            built.append((engine, serialized, sidecar.to_json()))
        install_engines(built)
    finally:
        context.pop()
    if timing_cache is not None:
        try:
            write_atomic(timing_cache, timing.data)
        except OSError as exc:
            raise BackendError(
                f"the engines are built, but the timing cache {timing_cache} cannot be written: {exc.strerror or exc}"
            ) from None
    return engines
