"""Validation during training: one-pass AUC of a torch model through the runtime's own tracker.

The model runs behind the runtime's ``InferenceBackend`` interface, so validation crops, decodes and penalises
exactly as a deployed bundle will, and a score here means the same as ``edgetrack eval``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from edgetrack.runtime.backends.base import InferenceBackend
from edgetrack.runtime.datasets import Sequence as EvalSequence
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.tracker import SiameseTracker

from .models.base import SiameseModel


class TorchBackend(InferenceBackend):
    """A torch model as a runtime backend, on whatever device its parameters are: validation tracks with it and
    export parity compares the exported models with it (``edgetrack.runtime.compare``)."""

    def __init__(self, model: SiameseModel):
        self.model = model
        self.name = "torch"
        g = model.config.geometry
        self.device = next(model.parameters()).device
        self.template_input = np.zeros((1, 3, g.exemplar_size, g.exemplar_size), np.float32)
        self.search_input = np.zeros((g.num_scales, 3, g.instance_size, g.instance_size), np.float32)
        self._zf: tuple[torch.Tensor, ...] = ()

    @torch.no_grad()
    def run_template(self) -> None:
        self._zf = self.model.template_features(torch.from_numpy(self.template_input).to(self.device))

    @torch.no_grad()
    def run_search(self) -> Mapping[str, np.ndarray]:
        outputs = self.model.track(torch.from_numpy(self.search_input).to(self.device), *self._zf)
        return {name: value.float().cpu().numpy() for name, value in outputs.items()}

    def template_features(self) -> dict[str, np.ndarray]:
        return {name: f.float().cpu().numpy() for name, f in zip(self.model.config.template_outputs, self._zf)}

    def close(self) -> None:
        self._zf = ()


def validation_sequences(paths: Sequence[str | Path]) -> list[EvalSequence]:
    """Every annotated sequence under ``paths`` (sequence folders, parents of them, or videos with ground truth)."""
    sequences = []
    for path in paths:
        sequences.extend(load_dataset(Path(path)).sequences)
    return sequences


def validate(model: SiameseModel, sequences: Sequence[EvalSequence]) -> dict[str, float]:
    """Mean AUC and precision of ``model`` over ``sequences``, and per sequence AUC. Every module's mode is restored
    (a trainer may keep some in eval mode, as frozen BatchNorm)."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        tracker = SiameseTracker(model.config.bundle_meta(), TorchBackend(model))
        results = [track_sequence(tracker, sequence) for sequence in sequences]
    finally:
        for module, training in modes.items():
            module.training = training
    scores = {"auc": float(np.mean([r.scores.auc for r in results])), "precision": float(np.mean([r.scores.precision for r in results]))}
    scores.update({f"auc/{r.name}": r.scores.auc for r in results})
    return scores
