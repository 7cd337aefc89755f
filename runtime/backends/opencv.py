"""OpenCV DNN backend: the lean choice. OpenCV is loaded anyway to decode frames, so running the bundle with its
DNN module spares ONNX Runtime's library and sessions, about 50 MiB of resident memory; ONNX Runtime is about
twice as fast on a desktop CPU (benchmarks/README.md).

OpenCV keeps a network's inputs between runs, so the template features are set once, after ``run_template``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from ..bundle import SEARCH_INPUT, TEMPLATE_INPUT, Bundle, ModelIO
from ..errors import BundleError
from .base import InferenceBackend


def _read(path: Path) -> cv2.dnn.Net:
    try:
        return cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise BundleError(f"OpenCV cannot load {path}: {reason[:200]}; re-export the bundle or use --backend onnxruntime") from None


def _run(net: cv2.dnn.Net, path: Path, inputs: Mapping[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    try:
        for name, value in inputs.items():
            net.setInput(value, name)
        return list(net.forward(outputs))
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise BundleError(f"OpenCV cannot run {path.name}: {reason[:200]}; use --backend onnxruntime") from None


def _check_shapes(path: Path, expected: ModelIO, names: list[str], got: list[np.ndarray]) -> None:
    for name, value in zip(names, got):
        if tuple(value.shape) != tuple(expected.outputs[name]):
            raise BundleError(f"{path.name} output {name!r} has shape {tuple(value.shape)}, the metadata says {expected.outputs[name]}")


class OpenCVBackend(InferenceBackend):
    """OpenCV's DNN module. ``threads`` sets OpenCV's thread count, which is the whole process's: it also caps the
    crops' resizing, as a board with that many cores would."""

    def __init__(self, bundle: Bundle, precision: str = "fp32", threads: int | None = None):
        if threads:
            cv2.setNumThreads(threads)
        meta = bundle.meta
        self._template_path, self._search_path = bundle.model_paths(precision)
        self._template = _read(self._template_path)
        self._search = _read(self._search_path)
        self.name = "opencv-dnn:cpu"
        self._feature_names = list(meta.template_io.outputs)
        self._output_names = list(meta.search_io.outputs)
        self.template_input = np.zeros(meta.template_io.inputs[TEMPLATE_INPUT], np.float32)
        self.search_input = np.zeros(meta.search_io.inputs[SEARCH_INPUT], np.float32)
        self._outputs = {name: np.zeros(shape, np.float32) for name, shape in meta.search_io.outputs.items()}
        # OpenCV reads no tensor shapes from a file, so one run on zeros checks them against the metadata.
        features = _run(self._template, self._template_path, {TEMPLATE_INPUT: self.template_input}, self._feature_names)
        _check_shapes(self._template_path, meta.template_io, self._feature_names, features)
        self._bind_features(features)
        outputs = _run(self._search, self._search_path, {SEARCH_INPUT: self.search_input}, self._output_names)
        _check_shapes(self._search_path, meta.search_io, self._output_names, outputs)

    def _bind_features(self, features: list[np.ndarray]) -> None:
        self._features = dict(zip(self._feature_names, features))
        for name, value in self._features.items():
            self._search.setInput(value, name)

    def run_template(self) -> None:
        self._bind_features(_run(self._template, self._template_path, {TEMPLATE_INPUT: self.template_input}, self._feature_names))

    def run_search(self) -> Mapping[str, np.ndarray]:
        self._search.setInput(self.search_input, SEARCH_INPUT)
        for name, value in zip(self._output_names, self._search.forward(self._output_names)):
            np.copyto(self._outputs[name], value)
        return self._outputs

    def template_features(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self._features.items()}

    def close(self) -> None:
        self._template = self._search = None
