"""Two runners of one model on the same real crops, output by output, as Polygraphy's comparator does it.

A runner is any ``InferenceBackend``: ONNX Runtime, OpenCV DNN, TensorRT, or the training side's torch model
(``edgetrack.distill.validate.TorchBackend``). Each runs one exemplar crop through its template model, then every
search crop through its search model; each output (the template features, then the search outputs) is compared
over all crops at once. Export parity, import parity, the accuracy gate of ``build-engine``, ``edgetrack
compare`` and the tests all measure through ``compare``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import geometry as geo
from .backends.base import InferenceBackend
from .bundle import BundleMeta
from .crops import TargetState, search_crop, template_crop
from .datasets import Sequence, load_dataset
from .errors import InputError, SourceError
from .records import OutputDiff, ParityRecord, Tolerance, worst_output
from .tracker import InputWriter

#: Search crops a comparison runs unless told otherwise.
SEARCH_CROPS = 4
#: The tolerance of a comparison that is not told one: float32 round-off between two runtimes passes it.
DEFAULT_TOLERANCE = Tolerance(atol=1e-3, rtol=1e-3)


@dataclass(frozen=True)
class Crops:
    """Network inputs for a comparison, in the model's input layout: one exemplar ``z (1, 3, E, E)`` and the
    search inputs run after it, each ``(num_scales, 3, I, I)``; ``origin`` says where they came from."""

    z: np.ndarray
    x: tuple[np.ndarray, ...]
    origin: str


def _annotated(box) -> bool:
    return bool(np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0)


def sequence_crops(meta: BundleMeta, sequence: Sequence, searches: int = SEARCH_CROPS, origin: str | None = None) -> Crops:
    """The tracker's crops of ``sequence``: the exemplar of its first box, then the search pyramid around
    ``searches`` later annotated boxes spread evenly over it, each padded with the first frame's mean colour as
    the tracker pads them. Frames are read one at a time, up to the last one used."""
    annotated = [i for i in range(1, len(sequence)) if _annotated(sequence.groundtruth[i])]
    if not _annotated(sequence.groundtruth[0]) or not annotated:
        raise SourceError(f"sequence {sequence.name} needs a first box and a later one to cut comparison crops from")
    picks = [annotated[int(k)] for k in np.linspace(0, len(annotated) - 1, searches)]
    g, writer = meta.geometry, InputWriter(meta)
    cropper = geo.Cropper(g.instance_size)
    factors = geo.siamfc_scale_factors(g.num_scales, g.scale_step)
    z = np.empty((1, 3, g.exemplar_size, g.exemplar_size), np.float32)
    searched: dict[int, np.ndarray] = {}
    fill = None
    for index, frame in enumerate(sequence.frames()):
        if index == 0:
            fill = geo.mean_fill(frame)
            writer.write(template_crop(frame, sequence.groundtruth[0], g, fill=fill), z[0])
        if index in picks:
            state = TargetState.from_box(sequence.groundtruth[index])
            x = np.empty((g.num_scales, 3, g.instance_size, g.instance_size), np.float32)
            for i, factor in enumerate(factors):
                writer.write(search_crop(frame, state, g, scale=factor, fill=fill, cropper=cropper), x[i])
            searched[index] = x
        if index >= picks[-1]:
            break
    return Crops(z=z, x=tuple(searched[i] for i in picks), origin=origin or sequence.name)


def real_crops(meta: BundleMeta, dataset: Path, searches: int = SEARCH_CROPS) -> Crops:
    """``sequence_crops`` of the first annotated sequence of ``dataset``."""
    data = load_dataset(dataset)
    if not data.sequences:
        raise SourceError(f"{dataset} holds no annotated sequence to take comparison crops from")
    sequence = data.sequences[0]
    return sequence_crops(meta, sequence, searches, origin=f"{sequence.name} of {dataset}")


def random_crops(meta: BundleMeta, searches: int = SEARCH_CROPS) -> Crops:
    """Uniform pixels through the model's input layout, when no annotated data is at hand."""
    rng = np.random.default_rng(0)
    g, writer = meta.geometry, InputWriter(meta)

    def crop(size: int, batch: int) -> np.ndarray:
        out = np.empty((batch, 3, size, size), np.float32)
        for i in range(batch):
            writer.write(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), out[i])
        return out

    return Crops(
        z=crop(g.exemplar_size, 1),
        x=tuple(crop(g.instance_size, g.num_scales) for _ in range(searches)),
        origin="uniform random pixels",
    )


@dataclass(frozen=True)
class Comparison:
    """A candidate runner against a reference runner on the same crops: one ``OutputDiff`` per output."""

    #: the runners' names (``InferenceBackend.name``)
    reference: str
    candidate: str
    inputs: str
    tolerance: Tolerance
    outputs: tuple[OutputDiff, ...]

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), key=_nan_last)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), key=_nan_last)

    @property
    def passed(self) -> bool:
        """Every element of every output within the tolerance, and nothing NaN or inf."""
        return all(o.passed for o in self.outputs)

    @property
    def worst(self) -> OutputDiff:
        """The output furthest from the reference relative to its scale."""
        return worst_output(self.outputs)

    def nonfinite(self) -> tuple[str, str] | None:
        """The first (runner, output) that gave NaN or inf, outputs in order and the reference before the
        candidate; None when every value is finite."""
        for o in self.outputs:
            if o.reference_nonfinite:
                return self.reference, o.name
            if o.candidate_nonfinite:
                return self.candidate, o.name
        return None

    def record(self, reference: str, runner: str, judged: bool = True) -> ParityRecord:
        """This comparison as bundle metadata keeps it; ``judged`` records the tolerance and whether it passed."""
        return ParityRecord(
            reference=reference,
            max_abs_diff=self.max_abs,
            runner=runner,
            inputs=self.inputs,
            max_rel_diff=self.max_rel,
            tolerance=self.tolerance if judged else None,
            passed=self.passed if judged else None,
            outputs=self.outputs,
        )


def _nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value


def output_diff(name: str, reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance = DEFAULT_TOLERANCE) -> OutputDiff:
    """How far ``candidate`` lies from ``reference`` (arrays of one shape), element by element."""
    ref = np.asarray(reference, np.float64).ravel()
    got = np.asarray(candidate, np.float64).ravel()
    diff = np.abs(got - ref)
    scale = float(np.abs(ref).max())
    p50, p95, p99 = (float(v) for v in np.percentile(diff, [50, 95, 99]))
    max_abs = float(diff.max())
    return OutputDiff(
        name=name,
        max_abs=max_abs,
        max_rel=max_abs / max(scale, 1e-12),
        mean_abs=float(diff.mean()),
        p50_abs=p50,
        p95_abs=p95,
        p99_abs=p99,
        scale=scale,
        elements=int(ref.size),
        beyond=int(np.count_nonzero(diff > tolerance.atol + tolerance.rtol * np.abs(ref))),
        reference_nonfinite=int(np.count_nonzero(~np.isfinite(ref))),
        candidate_nonfinite=int(np.count_nonzero(~np.isfinite(got))),
    )


def run_crops(runner: InferenceBackend, crops: Crops) -> dict[str, np.ndarray]:
    """Every output of ``runner`` on ``crops``, by name: the template features of the exemplar, then each search
    output stacked over the search crops."""
    runner.template_input[...] = crops.z
    runner.run_template()
    outputs: dict[str, list[np.ndarray]] = {name: [np.array(v)] for name, v in runner.template_features().items()}
    for x in crops.x:
        runner.search_input[...] = x
        for name, value in runner.run_search().items():
            outputs.setdefault(name, []).append(np.array(value))
    return {name: np.stack(values) for name, values in outputs.items()}


def compare_outputs(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], tolerance: Tolerance, names: Collection[str] | None = None
) -> tuple[OutputDiff, ...]:
    """One ``OutputDiff`` per output both sides give (of ``names``, when given), in the reference's order."""
    shared = [n for n in reference if n in candidate and (names is None or n in names)]
    if not shared:
        raise InputError(f"the runners share no output to compare (one gives {', '.join(reference)}, the other {', '.join(candidate)})")
    for name in shared:
        if reference[name].shape != candidate[name].shape:
            raise InputError(f"output {name!r} is {reference[name].shape[1:]} from one runner and {candidate[name].shape[1:]} from the other")
    return tuple(output_diff(name, reference[name], candidate[name], tolerance) for name in shared)


def compare(
    reference: InferenceBackend,
    candidate: InferenceBackend,
    crops: Crops,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
    names: Collection[str] | None = None,
) -> Comparison:
    """Run both runners on ``crops`` and compare every output they share (only ``names``, when given)."""
    outputs = compare_outputs(run_crops(reference, crops), run_crops(candidate, crops), tolerance, names)
    return Comparison(reference.name, candidate.name, crops.origin, tolerance, outputs)
