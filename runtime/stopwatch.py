"""Where one frame's time goes: the tracker marks the end of each stage, and a clock adds up the laps.

The tracker calls ``lap`` whether anyone measures or not, so the clock must cost next to nothing; without a
clock the tracker calls a no-op instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .records import FieldsJson

#: The stages of the tracking loop, in order. ``template`` runs once per target; the others once per frame.
STAGES = ("decode", "preprocess", "template", "search", "postprocess")


class StageClock:
    """Seconds spent per stage since ``start``: each ``lap(stage)`` charges the time since the previous mark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def start(self) -> None:
        self.seconds = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


def ignore_lap(stage: str) -> None:
    """The tracker's lap when nobody measures."""


@dataclass(frozen=True)
class LatencyStats(FieldsJson):
    """Percentiles of a set of durations, in milliseconds."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LatencyStats:
        return cls(count=int(raw["count"]), **{key: float(raw[key]) for key in ("mean", "p50", "p95", "p99", "max")})


def latency_stats(seconds) -> LatencyStats:
    """Summarise durations given in seconds; percentiles interpolate linearly between samples."""
    ms = np.asarray(seconds, float) * 1000.0
    if ms.size == 0:
        raise ValueError("no durations to summarise")
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return LatencyStats(count=int(ms.size), mean=float(ms.mean()), p50=float(p50), p95=float(p95), p99=float(p99), max=float(ms.max()))
