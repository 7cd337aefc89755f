"""TensorRT backend: runs engines that ``edgetrack build-engine`` built on this very machine.

Engines are never shipped in a bundle. Each one sits next to the bundle's models as
``<bundle>/template.<precision>.engine`` / ``search.<precision>.engine`` with a JSON sidecar that records what it
was built for and from; an engine whose sidecar does not fit this machine or this bundle is refused with a line
that says to rebuild, instead of failing deep inside TensorRT or, worse, running a stale model.

TensorRT and pycuda are imported inside functions only: most machines have neither, and the runtime must import
without them. Written against the name-based tensor API of TensorRT 8.6 and later.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import numpy as np

from ..bundle import PRECISIONS, SEARCH_INPUT, TEMPLATE_INPUT, Bundle, ModelIO, check_io
from ..errors import BackendError
from .base import InferenceBackend

MIN_TENSORRT = (8, 6)


def engine_paths(bundle: Bundle, precision: str) -> tuple[Path, Path]:
    """Where the template and search engines of ``precision`` live."""
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    return bundle.path / f"template.{precision}.engine", bundle.path / f"search.{precision}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def _build_command(engine: Path) -> str:
    # The precision is part of the file name (see engine_paths), so the hint works even when the sidecar is unreadable.
    precision = engine.name.split(".")[-2]
    return f"`edgetrack build-engine {engine.parent} --precision {precision}`"


def _rebuild(engine: Path) -> str:
    return f"rebuild it with {_build_command(engine)}"


@dataclass(frozen=True)
class Machine:
    """What an engine depends on, as read from the machine that builds or loads it."""

    tensorrt: str
    #: The CUDA version pycuda was built against, e.g. ``12.2``.
    cuda: str
    #: The newest CUDA version the installed driver supports, e.g. ``12.4``.
    driver: str
    gpu: str
    #: e.g. ``8.7`` for Jetson Orin.
    compute_capability: str

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt} on {self.gpu} (sm {self.compute_capability})"


#: The machine fields an engine cannot move across, with how a message names them.
#: TensorRT's documentation states that a plan is tied to the TensorRT version that built it and to the exact GPU
#: model (architecture) it was built on, unless built with the version- or hardware-compatibility flags, which
#: ``build-engine`` does not use. It names no such limit for the CUDA runtime or the driver: TensorRT checks those
#: itself when it loads, and any driver new enough for the installed TensorRT runs its engines. So the CUDA and
#: driver versions are recorded for diagnosis only; refusing an engine over them would force needless rebuilds
#: after every driver update.
PORTABILITY_FIELDS = {"tensorrt": "TensorRT version", "gpu": "GPU", "compute_capability": "compute capability"}


@dataclass(frozen=True)
class EngineSidecar:
    """``<engine>.json``: the machine an engine was built on, its precision and shapes, and its source model."""

    tensorrt: str
    cuda: str
    driver: str
    gpu: str
    compute_capability: str
    precision: str
    shapes: ModelIO
    #: The bundle model the engine was built from and its sha256, to catch a bundle re-exported since the build.
    onnx_file: str
    onnx_sha256: str

    @classmethod
    def for_machine(
        cls, machine: Machine, precision: str, shapes: ModelIO, onnx_file: str, onnx_sha256: str
    ) -> EngineSidecar:
        return cls(
            **dataclasses.asdict(machine),
            precision=precision,
            shapes=shapes,
            onnx_file=onnx_file,
            onnx_sha256=onnx_sha256,
        )

    @property
    def machine(self) -> Machine:
        return Machine(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Machine)})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EngineSidecar:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BackendError(f"engine sidecar is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise BackendError("engine sidecar must hold a JSON object")

        def text_field(name: str) -> str:
            value = raw[name]
            if not isinstance(value, str):
                raise TypeError(f"field {name!r} must be a string, not {type(value).__name__}")
            return value

        def shapes(group: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
            return {str(name): tuple(int(d) for d in dims) for name, dims in group.items()}

        try:
            return cls(
                **{f.name: text_field(f.name) for f in dataclasses.fields(cls) if f.name != "shapes"},
                shapes=ModelIO(inputs=shapes(raw["shapes"]["inputs"]), outputs=shapes(raw["shapes"]["outputs"])),
            )
        except KeyError as exc:
            raise BackendError(f"engine sidecar lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise BackendError(f"malformed engine sidecar ({exc})") from None


def read_sidecar(engine: Path) -> EngineSidecar:
    """The sidecar of ``engine``; a missing engine, a missing sidecar or an unreadable one raise ``BackendError``."""
    if not engine.is_file():
        raise BackendError(
            f"no TensorRT engine {engine}: engines are built on the device, with {_build_command(engine)}"
        )
    side = sidecar_path(engine)
    if not side.is_file():
        raise BackendError(
            f"engine {engine.name} has no sidecar {side.name}, so it cannot be checked against this machine: "
            f"{_rebuild(engine)}"
        )
    try:
        return EngineSidecar.from_json(side.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise BackendError(f"cannot read {side}: {exc}; {_rebuild(engine)}") from None
    except BackendError as exc:
        raise BackendError(f"{side}: {exc}; {_rebuild(engine)}") from None


def check_sidecar(engine: Path, sidecar: EngineSidecar, machine: Machine) -> None:
    """Refuse an engine built for another TensorRT version or another GPU (see ``PORTABILITY_FIELDS``)."""
    differ = [label for name, label in PORTABILITY_FIELDS.items() if getattr(sidecar, name) != getattr(machine, name)]
    if differ:
        raise BackendError(
            f"engine {engine.name} was built for {sidecar.machine.describe()}, this machine has {machine.describe()} "
            f"({', '.join(differ)} {'differs' if len(differ) == 1 else 'differ'}): {_rebuild(engine)}"
        )


def check_engine_source(
    engine: Path, sidecar: EngineSidecar, precision: str, io: ModelIO, digests: Mapping[str, str]
) -> None:
    """Refuse an engine that is not what the bundle now describes: other precision, shapes or source model.

    ``io`` is the bundle's I/O of the model the engine replaces, ``digests`` the bundle's file -> sha256.
    """
    if sidecar.precision != precision:
        raise BackendError(f"engine {engine.name} says it is {sidecar.precision}, not {precision}: {_rebuild(engine)}")
    if sidecar.shapes != io:
        raise BackendError(
            f"engine {engine.name} was built for inputs {sidecar.shapes.inputs} and outputs {sidecar.shapes.outputs}, "
            f"the bundle says {io.inputs} and {io.outputs}: {_rebuild(engine)}"
        )
    digest = digests.get(sidecar.onnx_file)
    if digest != sidecar.onnx_sha256:
        now = f"sha256 {digest[:12]}" if digest else "no such file"
        raise BackendError(
            f"engine {engine.name} was built from {sidecar.onnx_file} sha256 {sidecar.onnx_sha256[:12]}, "
            f"the bundle now has {now}, so the bundle changed since the build: {_rebuild(engine)}"
        )


def import_tensorrt() -> tuple[Any, Any]:
    """``(tensorrt, pycuda.driver)``, or one ``BackendError`` line that says how to get them."""
    try:
        import tensorrt as trt
        import pycuda.driver as cuda
    except (ImportError, OSError) as exc:  # OSError: the module is there but libnvinfer/libcuda is not
        missing = getattr(exc, "name", None) or "tensorrt"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(
            f"the TensorRT backend needs the tensorrt and pycuda Python packages, and {missing} cannot be imported "
            f"({reason}): on a Jetson TensorRT comes with JetPack (`sudo apt install nvidia-jetpack`, or only "
            "`sudo apt install python3-libnvinfer`; a virtualenv needs --system-site-packages to see it) and pycuda "
            'from `pip install pycuda`; on a desktop GPU run `pip install "edgetrack[tensorrt]"`; '
            "or use `--backend onnxruntime`"
        ) from None
    version = tuple(int(part) for part in re.findall(r"\d+", trt.__version__)[:2])
    if version < MIN_TENSORRT:
        raise BackendError(
            f"TensorRT {trt.__version__} is too old: edgetrack needs {'.'.join(map(str, MIN_TENSORRT))} or later "
            "(JetPack 6 on a Jetson); or use `--backend onnxruntime`"
        )
    return trt, cuda


def machine_fingerprint() -> Machine:
    """Read this machine's TensorRT, CUDA, driver and first GPU."""
    trt, cuda = import_tensorrt()
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            raise BackendError("TensorRT needs a CUDA GPU and this machine has none; use `--backend onnxruntime`")
        device = cuda.Device(0)
        driver = cuda.get_driver_version()
        return Machine(
            tensorrt=trt.__version__,
            cuda=".".join(str(part) for part in cuda.get_version()[:2]),
            driver=f"{driver // 1000}.{driver % 1000 // 10}",
            gpu=device.name(),
            compute_capability="{}.{}".format(*device.compute_capability()),
        )
    except cuda.Error as exc:
        raise BackendError(
            f"CUDA is not usable on this machine ({exc}); check the NVIDIA driver, or use `--backend onnxruntime`"
        ) from None


def tensorrt_available() -> bool:
    """Whether TensorRT, pycuda and a CUDA GPU are all here (what ``--backend auto`` asks)."""
    try:
        machine_fingerprint()
    except BackendError:
        return False
    return True


@functools.cache
def _logger() -> Any:
    # TensorRT keeps the first logger a process gives it and warns about any other, so every runtime shares one.
    trt, _ = import_tensorrt()
    return trt.Logger(trt.Logger.WARNING)


def _engine_io(trt: Any, engine: Any) -> tuple[ModelIO, dict[str, Any]]:
    """The engine's tensor shapes (``None`` where dynamic) and data types, by name."""
    io = ModelIO(inputs={}, outputs={})
    dtypes = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        shape = tuple(d if d >= 0 else None for d in engine.get_tensor_shape(name))
        (io.inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else io.outputs)[name] = shape
        dtypes[name] = engine.get_tensor_dtype(name)
    return io, dtypes


class TensorRTBackend(InferenceBackend):
    """Runs a bundle's two engines on the first CUDA GPU.

    Inputs go up from page-locked host buffers the tracker writes into; the template features live in one device
    buffer per tensor, written by the template engine and read by the search engine, so they never come back to
    the host. Use it from the thread that created it: that thread holds its CUDA context.
    """

    on_gpu = True

    def __init__(self, bundle: Bundle, precision: str = "fp32"):
        # Everything close() releases exists from the start, so a failure half-way through can clean up.
        self._cuda_context: Any = None
        self._stream: Any = None
        self._runtime: Any = None
        self._engines: list[Any] = []
        self._contexts: list[Any] = []
        self._template_context: Any = None
        self._search_context: Any = None
        self._device_buffers: list[Any] = []
        #: template output name -> (device address, shape)
        self._feature_devices: dict[str, tuple[int, tuple[int, ...]]] = {}

        paths = engine_paths(bundle, precision)
        trt, cuda = import_tensorrt()
        machine = machine_fingerprint()
        meta = bundle.meta
        ios = (meta.template_io, meta.search_io)
        for path, io in zip(paths, ios):
            sidecar = read_sidecar(path)
            check_sidecar(path, sidecar, machine)
            check_engine_source(path, sidecar, precision, io, meta.files)
        self.name = f"tensorrt:{precision}"
        self._cuda = cuda

        # The device's primary context is the one the CUDA runtime inside TensorRT (and any other CUDA library in
        # the process) uses, so pycuda's copies and TensorRT's kernels see the same memory.
        self._cuda_context = cuda.Device(0).retain_primary_context()
        self._cuda_context.push()
        try:
            self._stream = cuda.Stream()
            self._runtime = trt.Runtime(_logger())
            template, search = (self._load(trt, path, io) for path, io in zip(paths, ios))

            def host(shape: tuple[int, ...]) -> np.ndarray:
                return cuda.pagelocked_empty(shape, np.float32)

            def device(shape: tuple[int, ...]) -> int:
                allocation = cuda.mem_alloc(int(np.prod(shape)) * np.dtype(np.float32).itemsize)
                self._device_buffers.append(allocation)
                return int(allocation)

            self.template_input = host(meta.template_io.inputs[TEMPLATE_INPUT])
            self.search_input = host(meta.search_io.inputs[SEARCH_INPUT])
            self._outputs = {name: host(shape) for name, shape in meta.search_io.outputs.items()}
            self._template_input_device = device(self.template_input.shape)
            self._search_input_device = device(self.search_input.shape)
            self._output_devices = {name: device(shape) for name, shape in meta.search_io.outputs.items()}

            bindings = [
                (template, TEMPLATE_INPUT, self._template_input_device),
                (search, SEARCH_INPUT, self._search_input_device),
                *((search, name, address) for name, address in self._output_devices.items()),
            ]
            for name, shape in meta.template_io.outputs.items():
                features = device(shape)
                self._feature_devices[name] = (features, shape)
                bindings += [(template, name, features), (search, name, features)]
            for context, name, address in bindings:
                if not context.set_tensor_address(name, address):
                    raise BackendError(f"TensorRT refused the buffer of tensor {name!r}; {_rebuild(paths[0])}")
            self._template_context, self._search_context = template, search
        except BaseException:
            self.close()
            raise

    def _load(self, trt: Any, path: Path, expected: ModelIO) -> Any:
        """Deserialize one engine, check its tensors against the bundle and give an execution context for it."""
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendError(f"TensorRT cannot load {path.name} (see its log above): {_rebuild(path)}")
        self._engines.append(engine)
        actual, dtypes = _engine_io(trt, engine)
        check_io(path, expected, actual)
        for name, dtype in dtypes.items():
            if dtype != trt.DataType.FLOAT:
                raise BackendError(
                    f"engine {path.name} tensor {name!r} is {dtype.name}, but bundle engines take and give float32: "
                    f"{_rebuild(path)}"
                )
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(f"TensorRT cannot make an execution context for {path.name}: is the GPU out of memory?")
        self._contexts.append(context)
        for name, shape in actual.inputs.items():
            # An engine built with dynamic dimensions runs at the one size the bundle fixes.
            if None in shape and not context.set_input_shape(name, expected.inputs[name]):
                raise BackendError(f"engine {path.name} does not accept {name!r} of shape {expected.inputs[name]}")
        return context

    def _open_stream(self) -> Any:
        # After close() the device addresses are stale: copying to them could write into someone else's memory.
        if self._stream is None:
            raise BackendError("the TensorRT backend is closed")
        return self._stream

    def _execute(self, context: Any, stream: Any, what: str) -> None:
        if not context.execute_async_v3(stream.handle):
            raise BackendError(f"TensorRT failed to run the {what} engine (see its log above)")

    def run_template(self) -> None:
        stream = self._open_stream()
        self._cuda.memcpy_htod_async(self._template_input_device, self.template_input, stream)
        self._execute(self._template_context, stream, "template")
        stream.synchronize()

    def run_search(self) -> Mapping[str, np.ndarray]:
        cuda, stream = self._cuda, self._open_stream()
        cuda.memcpy_htod_async(self._search_input_device, self.search_input, stream)
        self._execute(self._search_context, stream, "search")
        for name, buffer in self._outputs.items():
            cuda.memcpy_dtoh_async(buffer, self._output_devices[name], stream)
        stream.synchronize()
        return self._outputs

    def template_features(self) -> dict[str, np.ndarray]:
        cuda, stream = self._cuda, self._open_stream()
        host = {name: cuda.pagelocked_empty(shape, np.float32) for name, (_, shape) in self._feature_devices.items()}
        for name, buffer in host.items():
            cuda.memcpy_dtoh_async(buffer, self._feature_devices[name][0], stream)
        stream.synchronize()
        return {name: np.array(buffer) for name, buffer in host.items()}

    def close(self) -> None:
        if self._cuda_context is None:
            return
        try:
            if self._stream is not None:
                self._stream.synchronize()
            # TensorRT objects release device memory when they die, so they go while the context is still current,
            # contexts before their engines and engines before the runtime that made them.
            self._template_context = self._search_context = None
            self._contexts.clear()
            self._engines.clear()
            self._runtime = None
            for allocation in self._device_buffers:
                allocation.free()
            self._device_buffers.clear()
            self._stream = None
        finally:
            context, self._cuda_context = self._cuda_context, None
            # Only popped, not detached: the page-locked host buffers may still be referenced by the tracker, and
            # pycuda frees them through this context when the last reference goes.
            context.pop()
