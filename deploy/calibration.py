"""Calibration crops for int8: real template and search inputs, taken where the model's own fp32 tracking goes.

Quantisation ranges are only as good as the activations they are measured on, so the crops are the runtime's
own: a ``SiameseTracker`` on the bundle's fp32 models (ONNX Runtime, CPU) follows each annotated sequence from
its first ground-truth box, and at evenly spread frames the exact search input it feeds the model is recorded,
together with the template features bound at that moment. Template crops are exemplar crops of the tracked box,
cut the way ``SiameseTracker.init`` cuts one. The same crops feed ONNX Runtime's static quantisation and
TensorRT's calibrator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgetrack.runtime import geometry as geo
from edgetrack.runtime.backends import ignore_note, open_backend
from edgetrack.runtime.backends.base import InferenceBackend
from edgetrack.runtime.bundle import SEARCH_INPUT, TEMPLATE_INPUT, Bundle
from edgetrack.runtime.crops import template_crop
from edgetrack.runtime.datasets import Sequence, load_dataset
from edgetrack.runtime.errors import InputError, SourceError
from edgetrack.runtime.progress import NO_PROGRESS, Progress
from edgetrack.runtime.tracker import InputWriter, SiameseTracker


@dataclass(frozen=True)
class CalibrationCrops:
    """Complete input dicts of the template model (``{"z": ...}``) and of the search model (``x`` + features)."""

    template_feeds: list[dict[str, np.ndarray]]
    search_feeds: list[dict[str, np.ndarray]]
    #: sha256 over the sampled sequences, frame indices and every feed's bytes
    fingerprint: str
    #: what the bundle metadata records: sources, sequences and sampled frames, counts, seed
    description: dict


class _RecordingBackend(InferenceBackend):
    """Passes every call to the real backend; on request, keeps a copy of the next search feed.

    The template features stay inside the real backend, so they are recomputed here by a plain session of the
    same fp32 template model on the very input the tracker wrote.
    """

    def __init__(self, inner: InferenceBackend, template_model: Path):
        self.inner = inner
        self.name = inner.name
        self.template_input = inner.template_input
        self.search_input = inner.search_input
        self._template = ort.InferenceSession(str(template_model), providers=["CPUExecutionProvider"])
        self._feature_names = [o.name for o in self._template.get_outputs()]
        self._features: dict[str, np.ndarray] = {}
        self.record_next = False
        self.search_feeds: list[dict[str, np.ndarray]] = []

    def run_template(self) -> None:
        self.inner.run_template()
        values = self._template.run(self._feature_names, {TEMPLATE_INPUT: self.template_input})
        self._features = dict(zip(self._feature_names, values))

    def run_search(self) -> Mapping[str, np.ndarray]:
        if self.record_next:
            self.search_feeds.append({SEARCH_INPUT: self.search_input.copy(), **{k: v.copy() for k, v in self._features.items()}})
            self.record_next = False
        return self.inner.run_search()

    def template_features(self) -> dict[str, np.ndarray]:
        return self.inner.template_features()

    def close(self) -> None:
        self.inner.close()


def _spread(updates: list[int], frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Frame indices per sequence: ``frames`` in all, shared in proportion to each sequence's updates (frames
    after the first), evenly spaced within a sequence from a random phase so that the seed moves them."""
    total = sum(updates)
    if total <= frames:
        return [np.arange(1, n + 1) for n in updates]
    shares = np.array(updates, np.float64) * frames / total
    counts = np.floor(shares).astype(int)
    # Largest remainder: the counts add up to exactly ``frames``.
    for i in np.argsort(counts - shares)[: frames - counts.sum()]:
        counts[i] += 1
    picks = []
    for n, k in zip(updates, counts):
        step = n / k if k else 0.0
        picks.append(1 + np.floor((np.arange(k) + rng.random()) * step).astype(int))
    return picks


def _exemplar(meta, frame: np.ndarray, box, cropper: geo.Cropper, writer: InputWriter) -> np.ndarray:
    """The exemplar input ``SiameseTracker.init`` would make for ``box`` in ``frame``."""
    crop = template_crop(frame, box, meta.geometry, cropper=cropper)
    z = np.empty(meta.template_io.inputs[TEMPLATE_INPUT], np.float32)
    writer.write(crop, z[0])
    return z


def _load_sources(sources: list[Path], note: Callable[[str], None]) -> list[tuple[Path, Sequence]]:
    found = []
    for source in sources:
        data = load_dataset(Path(source))
        for name, reason in data.skipped:
            note(f"calibration: skipping {source}/{name}: {reason}")
        found += [(Path(source), sequence) for sequence in data.sequences]
    return found


def sample_calibration(
    bundle: Bundle,
    sources: list[Path],
    frames: int = 200,
    seed: int = 0,
    note: Callable[[str], None] = ignore_note,
    progress: Progress = NO_PROGRESS,
) -> CalibrationCrops:
    """Follow every annotated sequence in ``sources`` with the fp32 model and record ``frames`` search feeds
    (fewer when the sequences have fewer frames) plus one template feed per sampled frame and per first frame.
    Skipped sequences go to ``note``, frames read to ``progress``."""
    if frames < 1:
        raise InputError(f"the number of calibration frames must be at least 1, got {frames}")
    if not sources:
        raise SourceError("no calibration source: give --calib with a sequence folder, a folder of sequences or a video")
    sequences = _load_sources(sources, note)
    picks = _spread([len(s) - 1 for _, s in sequences], frames, np.random.default_rng(seed))
    if not any(len(p) for p in picks):
        raise SourceError(
            f"{', '.join(map(str, sources))}: no sequence has more than one frame, so there is nothing to track for calibration"
        )

    meta = bundle.meta
    template_model, _ = bundle.model_paths("fp32")
    recorder = _RecordingBackend(open_backend(bundle, "fp32", backend="onnxruntime", device="cpu"), template_model)
    tracker = SiameseTracker(meta, recorder)
    cropper, writer = geo.Cropper(meta.geometry.exemplar_size), InputWriter(meta)
    template_feeds: list[dict[str, np.ndarray]] = []
    sampled = []
    to_read = sum(int(p[-1]) + 1 for p in picks if len(p))
    try:
        progress.start(to_read, "calibration crops")
        for (source, sequence), indices in zip(sequences, picks):
            if not len(indices):
                continue
            wanted, last = set(indices.tolist()), int(indices[-1])
            for index, frame in enumerate(sequence.frames()):
                if index == 0:
                    tracker.init(frame, sequence.groundtruth[0])
                    template_feeds.append({TEMPLATE_INPUT: recorder.template_input.copy()})
                else:
                    recorder.record_next = index in wanted
                    result = tracker.update(frame)
                    if index in wanted:
                        template_feeds.append({TEMPLATE_INPUT: _exemplar(meta, frame, result.box, cropper, writer)})
                progress.advance(1)
                if index == last:
                    break
            sampled.append(
                {"source": str(source), "sequence": sequence.name, "frames": len(sequence), "sampled": indices.tolist()}
            )
    finally:
        progress.close()
        recorder.close()

    digest = hashlib.sha256(json.dumps([(s["sequence"], s["sampled"]) for s in sampled]).encode())
    for feed in [*template_feeds, *recorder.search_feeds]:
        for name in sorted(feed):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(feed[name]).tobytes())
    description = {
        "sources": [str(s) for s in sources],
        "sequences": sampled,
        "search_feeds": len(recorder.search_feeds),
        "template_feeds": len(template_feeds),
        "frames_requested": frames,
        "seed": seed,
        "tracker": "fp32 onnxruntime, from the first ground-truth box",
    }
    return CalibrationCrops(template_feeds, recorder.search_feeds, digest.hexdigest(), description)
