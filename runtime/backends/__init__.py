"""Inference backends behind one small interface (``base.InferenceBackend``), and the choice between them."""

from __future__ import annotations

from collections.abc import Callable

from edgetrack.defaults import BACKEND, BACKENDS, DEVICE, PRECISION

from ..bundle import Bundle
from ..errors import BackendError
from .base import InferenceBackend


def ignore_note(line: str) -> None:
    """The default ``note`` of ``open_backend``: library code does not print."""


def open_backend(
    bundle: Bundle,
    precision: str = PRECISION,
    backend: str = BACKEND,
    device: str = DEVICE,
    threads: int | None = None,
    note: Callable[[str], None] = ignore_note,
) -> InferenceBackend:
    """Load ``bundle``'s ``precision`` models on the chosen backend.

    ``auto`` takes TensorRT engines when TensorRT imports, a CUDA device exists and the engines were built for
    this machine; otherwise ONNX Runtime on ``device``. Engines it finds but cannot use (a stale sidecar, another
    GPU) are passed over with one line to ``note``. ``opencv`` is OpenCV's DNN module on the CPU: slower than
    ONNX Runtime but about 50 MiB leaner, for boards where memory is what runs out.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend in ("auto", "tensorrt"):
        from . import tensorrt

        if backend == "tensorrt":
            return tensorrt.TensorRTBackend(bundle, precision)
        if tensorrt.tensorrt_available() and all(p.exists() for p in tensorrt.engine_paths(bundle, precision)):
            try:
                return tensorrt.TensorRTBackend(bundle, precision)
            except BackendError as exc:
                note(f"not using the TensorRT engines ({exc}); running ONNX Runtime instead")
    if backend == "opencv":
        if device != "cpu":
            raise BackendError("the opencv backend runs on the CPU only; use --backend onnxruntime for --device cuda")
        from .opencv import OpenCVBackend

        return OpenCVBackend(bundle, precision, threads=threads)
    from .onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(bundle, precision, device=device, threads=threads)
