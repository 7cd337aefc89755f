"""Real NanoTrack weights on the real sequences score what a careful pysot-convention loop scores."""

from __future__ import annotations

import pytest

from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.tracker import SiameseTracker

# Issue #2's reference AUCs: pysot-convention loop, each model's tuned hyper-parameters, BGR input.
REFERENCE_AUC = {
    "v1": {"Crossing": 0.704, "bag": 0.751, "dat": 0.758},
    "v2": {"Crossing": 0.742, "bag": 0.763, "dat": 0.777},
    "v3": {"Crossing": 0.717, "bag": 0.772, "dat": 0.779},
}


@pytest.fixture(scope="module")
def sequences(data):
    return {s.name: s for s in load_dataset(data / "sequences").sequences}


@pytest.mark.parametrize("backend", ["onnxruntime", "opencv"])
@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_auc_matches_reference(nanotrack_bundles, sequences, version, backend):
    bundle = nanotrack_bundles[version]
    tracker = SiameseTracker(bundle.meta, open_backend(bundle, backend=backend))
    for name, expected in REFERENCE_AUC[version].items():
        result = track_sequence(tracker, sequences[name])
        assert result.frames == len(sequences[name])
        assert result.scores.auc == pytest.approx(expected, abs=0.01), f"{version} {name}"
