"""The records a bundle's metadata keeps about its models: how far they lie from what they were made from (parity)
and how a built precision tracks next to fp32 (the accuracy gate).

Each is a frozen dataclass; ``to_json`` gives the JSON object ``edgetrack.json`` holds and ``from_json`` reads one
back. Keys added after bundles were first written are optional, so every bundle written before them still loads:
a parity record from ``import-nanotrack`` held only ``reference`` and ``max_abs_diff``, and an accuracy record had
no per-output errors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FieldsJson:
    """The ``to_json`` of a frozen dataclass whose JSON object is its fields as they are (``dataclasses.asdict``)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Tolerance:
    """The element-wise bound ``|candidate - reference| <= atol + rtol * |reference|`` (numpy's ``allclose``)."""

    atol: float
    rtol: float

    def to_json(self) -> dict[str, Any]:
        return {"atol": self.atol, "rtol": self.rtol}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Tolerance:
        return cls(atol=float(raw["atol"]), rtol=float(raw["rtol"]))


#: The statistics of an ``OutputDiff`` that are floats, in the order its JSON object lists them.
_DIFF_FLOATS = ("max_abs", "max_rel", "mean_abs", "p50_abs", "p95_abs", "p99_abs", "scale")
_DIFF_COUNTS = ("elements", "beyond", "reference_nonfinite", "candidate_nonfinite")


@dataclass(frozen=True)
class OutputDiff(FieldsJson):
    """How far one output of a candidate lies from the reference's, over every crop of a comparison, element by
    element (Polygraphy's comparator reports the same figures)."""

    name: str
    #: the largest ``|candidate - reference|``
    max_abs: float
    #: ``max_abs`` over the output's own scale ``max |reference|``: element-wise ratios blow up on outputs that pass
    #: through zero, so the relative error is taken against the whole tensor
    max_rel: float
    mean_abs: float
    p50_abs: float
    p95_abs: float
    p99_abs: float
    #: ``max |reference|``, what ``max_rel`` divides by
    scale: float
    elements: int
    #: elements outside the comparison's tolerance
    beyond: int = 0
    #: NaN or inf elements of the reference's and of the candidate's output
    reference_nonfinite: int = 0
    candidate_nonfinite: int = 0

    @property
    def passed(self) -> bool:
        """Every element within the tolerance, and none of either side NaN or inf (NaN fails no comparison)."""
        return self.beyond == 0 and self.reference_nonfinite == 0 and self.candidate_nonfinite == 0

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> OutputDiff:
        counts = {key: int(raw[key]) for key in _DIFF_COUNTS if key in raw}
        return cls(name=str(raw["name"]), **{key: float(raw[key]) for key in _DIFF_FLOATS}, **counts)


def worst_output(outputs: tuple[OutputDiff, ...]) -> OutputDiff:
    """The output furthest from the reference relative to its scale; one with NaN counts as furthest."""
    return max(outputs, key=lambda o: math.inf if math.isnan(o.max_rel) else o.max_rel)


@dataclass(frozen=True)
class ParityRecord:
    """Models measured against a reference on the same crops: an export against torch, an import against the
    published pair (``parity`` in ``edgetrack.json``), or a built precision against fp32 (inside its accuracy
    record). ``tolerance`` and ``passed`` are there when the measurement decided something."""

    #: what the models were compared with, e.g. ``torch (fp32, CPU)``
    reference: str
    #: the largest ``|difference|`` over every output
    max_abs_diff: float
    #: what ran the models, e.g. ``onnxruntime 1.20.0 CPUExecutionProvider``
    runner: str | None = None
    #: where the crops came from, e.g. ``Crossing of ../shared/data/sequences``
    inputs: str | None = None
    #: the largest ``max_rel`` over every output
    max_rel_diff: float | None = None
    tolerance: Tolerance | None = None
    passed: bool | None = None
    #: each output's errors, template features first
    outputs: tuple[OutputDiff, ...] = ()

    def to_json(self) -> dict[str, Any]:
        raw = {
            "reference": self.reference,
            "runner": self.runner,
            "inputs": self.inputs,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "tolerance": self.tolerance.to_json() if self.tolerance else None,
            "passed": self.passed,
            "outputs": [o.to_json() for o in self.outputs] or None,
        }
        return {key: value for key, value in raw.items() if value is not None}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ParityRecord:
        return cls(
            reference=str(raw["reference"]),
            max_abs_diff=float(raw["max_abs_diff"]),
            runner=_optional(raw, "runner", str),
            inputs=_optional(raw, "inputs", str),
            max_rel_diff=_optional(raw, "max_rel_diff", float),
            tolerance=_optional(raw, "tolerance", Tolerance.from_json),
            passed=_optional(raw, "passed", _bool),
            outputs=tuple(OutputDiff.from_json(o) for o in raw.get("outputs") or ()),
        )


@dataclass(frozen=True)
class SequenceAccuracy(FieldsJson):
    """One sequence of the accuracy gate: the built precision's AUC next to fp32's."""

    sequence: str
    fp32_auc: float
    auc: float

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SequenceAccuracy:
        return cls(sequence=str(raw["sequence"]), fp32_auc=float(raw["fp32_auc"]), auc=float(raw["auc"]))


@dataclass(frozen=True)
class AccuracyRecord:
    """The accuracy gate's record of one built precision (``accuracy.<precision>`` in ``edgetrack.json``): its mean
    AUC next to fp32's on the same sequences, with which backend, and how far each of its outputs lies from fp32's."""

    auc: float
    fp32_auc: float
    #: ``fp32_auc - auc``; NaN when a tracker lost every frame to NaN
    drop: float
    max_auc_drop: float
    backend: str
    #: the folders and videos the sequences came from
    sources: tuple[str, ...] = ()
    sequences: tuple[SequenceAccuracy, ...] = ()
    #: the built models against fp32 (ONNX Runtime) on real crops; absent from bundles built before it was recorded
    parity: ParityRecord | None = None

    def to_json(self) -> dict[str, Any]:
        raw = {
            "auc": self.auc,
            "fp32_auc": self.fp32_auc,
            "drop": self.drop,
            "max_auc_drop": self.max_auc_drop,
            "sources": list(self.sources),
            "sequences": [s.to_json() for s in self.sequences],
            "backend": self.backend,
        }
        return raw | ({"parity": self.parity.to_json()} if self.parity else {})

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AccuracyRecord:
        return cls(
            auc=float(raw["auc"]),
            fp32_auc=float(raw["fp32_auc"]),
            drop=float(raw["drop"]),
            max_auc_drop=float(raw["max_auc_drop"]),
            backend=str(raw["backend"]),
            sources=tuple(str(s) for s in raw.get("sources", ())),
            sequences=tuple(SequenceAccuracy.from_json(s) for s in raw.get("sequences", ())),
            parity=_optional(raw, "parity", ParityRecord.from_json),
        )


def _optional(raw: Mapping[str, Any], key: str, read):
    value = raw.get(key)
    return None if value is None else read(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value
