"""``edgetrack profile``'s report.json as typed records: one frozen dataclass per section, each with ``to_json``
(the JSON object the section is in report.json) and ``from_json`` (reading one back).

The schema is ``REPORT_SCHEMA``; a report of a newer schema is refused rather than read wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .records import FieldsJson
from .stopwatch import LatencyStats

REPORT_SCHEMA = 1
REPORT_TOOL = "edgetrack profile"


def _fields(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``cls``'s fields in the JSON object ``raw``, as they are there."""
    return {f.name: raw[f.name] for f in dataclasses.fields(cls)}


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class ReportBundle(FieldsJson):
    """What was profiled: the bundle, the precision and the backend that ran it."""

    name: str
    path: str
    family: str
    precision: str
    backend: str

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReportBundle:
        return cls(**{key: str(value) for key, value in _fields(cls, raw).items()})


@dataclass(frozen=True)
class ReportRun:
    """How the run went: its source and mode, and the frames recorded, dropped (paced mode) and lost."""

    source: str
    mode: str
    #: the pace of paced mode; None offline
    paced_fps: float | None
    warmup: int
    frames: int
    dropped: int
    lost: int
    #: the first frame's target, x, y, w, h
    init: tuple[float, ...]
    wall_seconds: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"init": list(self.init)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReportRun:
        return cls(**_fields(cls, raw) | {"init": _floats(raw["init"])})


@dataclass(frozen=True)
class ReportFps(FieldsJson):
    """Frames per second: of the update calls alone (as ``edgetrack eval``), and of the whole loop."""

    tracker: float
    end_to_end: float

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReportFps:
        return cls(tracker=float(raw["tracker"]), end_to_end=float(raw["end_to_end"]))


@dataclass(frozen=True)
class GpuMemory(FieldsJson):
    """GPU memory over the run, in MiB, and what read it."""

    reader: str
    start_mb: float
    peak_mb: float
    end_mb: float

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> GpuMemory:
        return cls(**_fields(cls, raw))


@dataclass(frozen=True)
class ReportMemory:
    """Host memory (resident set) over the run in MiB, and GPU memory where a reader found some."""

    rss_start_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    rss_growth_mb: float
    #: the process's peak, loading the models included
    process_peak_rss_mb: float
    gpu: GpuMemory | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"gpu": self.gpu.to_json() if self.gpu else None}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReportMemory:
        return cls(**_fields(cls, raw) | {"gpu": GpuMemory.from_json(raw["gpu"]) if raw["gpu"] else None})


@dataclass(frozen=True)
class ReportCpu(FieldsJson):
    """CPU time over the run, and it as a share of one core and of the usable cores."""

    seconds: float
    utilisation_percent: float
    machine_percent: float

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReportCpu:
        return cls(**{key: float(value) for key, value in _fields(cls, raw).items()})


@dataclass(frozen=True)
class ReportModel(FieldsJson):
    """The profiled precision's files and, where the bundle records its cost, parameters and GFLOPs."""

    size_mb: float
    params: int | None
    template_gflops: float | None
    search_gflops: float | None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReportModel:
        return cls(**_fields(cls, raw))


@dataclass(frozen=True)
class ReportTimeline:
    """Per recorded frame: when it finished, each stage's time and, in paced mode, its arrival-to-result time."""

    finished_at_s: tuple[float, ...]
    stages_ms: Mapping[str, tuple[float, ...]]
    arrival_to_result_ms: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "finished_at_s": list(self.finished_at_s),
            "stages_ms": {stage: list(ms) for stage, ms in self.stages_ms.items()},
            "arrival_to_result_ms": list(self.arrival_to_result_ms),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReportTimeline:
        return cls(
            finished_at_s=_floats(raw["finished_at_s"]),
            stages_ms={stage: _floats(ms) for stage, ms in raw["stages_ms"].items()},
            arrival_to_result_ms=_floats(raw["arrival_to_result_ms"]),
        )


@dataclass(frozen=True)
class ReportSamples:
    """The resource trace: host RSS (MiB), CPU (% of one core) and GPU memory (MiB, None unread) over time."""

    seconds: tuple[float, ...]
    rss_mb: tuple[float, ...]
    cpu_percent: tuple[float, ...]
    gpu_mb: tuple[float | None, ...]

    def to_json(self) -> dict[str, Any]:
        return {key: list(value) for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReportSamples:
        return cls(
            seconds=_floats(raw["seconds"]),
            rss_mb=_floats(raw["rss_mb"]),
            cpu_percent=_floats(raw["cpu_percent"]),
            gpu_mb=tuple(None if v is None else float(v) for v in raw["gpu_mb"]),
        )


@dataclass(frozen=True)
class ProfileReport:
    """The whole report.json of one profile run; report.md, report.html and the plots are rendered from it."""

    created: str
    bundle: ReportBundle
    run: ReportRun
    fps: ReportFps
    #: per stage, in the order the tracking loop runs them, then ``update`` and ``end_to_end``
    latency_ms: Mapping[str, LatencyStats]
    memory: ReportMemory
    cpu: ReportCpu
    model: ReportModel
    #: the machine and software, as ``environment.describe_environment`` gives them
    environment: Mapping[str, Any]
    timeline: ReportTimeline
    samples: ReportSamples
    #: each plot's PNG file name in the report folder
    plots: Mapping[str, str]
    schema: int = REPORT_SCHEMA
    tool: str = REPORT_TOOL

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "tool": self.tool,
            "created": self.created,
            "bundle": self.bundle.to_json(),
            "run": self.run.to_json(),
            "fps": self.fps.to_json(),
            "latency_ms": {stage: stats.to_json() for stage, stats in self.latency_ms.items()},
            "memory": self.memory.to_json(),
            "cpu": self.cpu.to_json(),
            "model": self.model.to_json(),
            "environment": dict(self.environment),
            "timeline": self.timeline.to_json(),
            "samples": self.samples.to_json(),
            "plots": dict(self.plots),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ProfileReport:
        if int(raw["schema"]) > REPORT_SCHEMA:
            raise ValueError(f"report schema {raw['schema']} is newer than this edgetrack reads ({REPORT_SCHEMA})")
        return cls(
            schema=int(raw["schema"]),
            tool=str(raw["tool"]),
            created=str(raw["created"]),
            bundle=ReportBundle.from_json(raw["bundle"]),
            run=ReportRun.from_json(raw["run"]),
            fps=ReportFps.from_json(raw["fps"]),
            latency_ms={stage: LatencyStats.from_json(stats) for stage, stats in raw["latency_ms"].items()},
            memory=ReportMemory.from_json(raw["memory"]),
            cpu=ReportCpu.from_json(raw["cpu"]),
            model=ReportModel.from_json(raw["model"]),
            environment=dict(raw["environment"]),
            timeline=ReportTimeline.from_json(raw["timeline"]),
            samples=ReportSamples.from_json(raw["samples"]),
            plots={name: str(file) for name, file in raw["plots"].items()},
        )
