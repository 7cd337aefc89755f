"""The interface every inference backend implements.

The tracker writes its crops straight into the backend's own input buffers and reads the outputs from buffers
the backend reuses, so the hot path allocates nothing. The template features never leave the backend: they are
computed once by ``run_template`` and stay bound as inputs of the search model. A backend is a context manager:
leaving the ``with`` block closes it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import numpy as np


class InferenceBackend(abc.ABC):
    """Runs a bundle's template and search models for one tracker."""

    #: Short name shown in reports, e.g. ``onnxruntime:CPUExecutionProvider``.
    name: str
    #: Whether the models run on a GPU, so a profiler knows to read GPU memory.
    on_gpu: bool = False
    #: The float32 NCHW buffer the tracker writes the exemplar crop into; the backend's own, never replaced.
    template_input: np.ndarray
    #: The float32 NCHW buffer the tracker writes the search crop(s) into; the backend's own, never replaced.
    search_input: np.ndarray

    @abc.abstractmethod
    def run_template(self) -> None:
        """Compute the template features from ``template_input`` and keep them bound for ``run_search``."""

    @abc.abstractmethod
    def run_search(self) -> Mapping[str, np.ndarray]:
        """Run the search model on ``search_input``; outputs by name, valid until the next call."""

    @abc.abstractmethod
    def template_features(self) -> dict[str, np.ndarray]:
        """A host copy of the template features the last ``run_template`` bound, by name: for comparing runners
        (``runtime.compare``), never on the tracking path."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the models and device memory. Safe to call twice."""

    def __enter__(self) -> InferenceBackend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
