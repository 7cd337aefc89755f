"""Memory and CPU over a run: a background thread samples the process every few milliseconds.

Host memory and CPU come from psutil. GPU memory comes from the first reader that works here: NVML (the
``nvidia-ml-py`` package), then ``nvidia-smi``; on a Jetson, whose GPU shares the host's memory, it is the
system's memory in use from ``/proc/meminfo``.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .environment import DEVICE_TREE_MODEL, nvidia_smi

MIB = 1024 * 1024
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class GpuMemoryReader:
    """Reads GPU memory in use, in MiB; ``scope`` says whose: this ``process``, the whole ``device``, or the
    ``shared`` memory of a board whose GPU and CPU use the same RAM."""

    source: str
    scope: str
    read: Callable[[], float | None]


def smi_process_memory(rows: list[list[str]], pid: int) -> float | None:
    """This process's MiB in ``nvidia-smi --query-compute-apps=pid,used_memory`` rows."""
    used = [float(row[1]) for row in rows if len(row) >= 2 and row[0] == str(pid) and row[1].replace(".", "").isdigit()]
    return sum(used) if used else None


def meminfo_used_mb(text: str) -> float | None:
    """MemTotal - MemAvailable of a ``/proc/meminfo`` text, in MiB (the kernel reports kB)."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0])
    if "MemTotal" not in values or "MemAvailable" not in values:
        return None
    return (values["MemTotal"] - values["MemAvailable"]) / 1024


def _nvml_reader() -> GpuMemoryReader | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # noqa: BLE001 - no NVML, no driver or no GPU: try the next reader
        return None
    pid = os.getpid()

    def read() -> float | None:
        processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        mine = [p.usedGpuMemory for p in processes if p.pid == pid and p.usedGpuMemory is not None]
        return sum(mine) / MIB if mine else None

    # Inside a container NVML sees host pids only, and ours never matches: fall back to the whole device.
    if read() is None:
        return GpuMemoryReader("nvml", "device", lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used / MIB)
    return GpuMemoryReader("nvml", "process", read)


def _smi_reader() -> GpuMemoryReader | None:
    if nvidia_smi("--query-gpu=memory.used") is None:
        return None
    pid = os.getpid()

    def process() -> float | None:
        rows = nvidia_smi("--query-compute-apps=pid,used_memory")
        return smi_process_memory(rows, pid) if rows else None

    def device() -> float | None:
        rows = nvidia_smi("--query-gpu=memory.used")
        return float(rows[0][0]) if rows else None

    if process() is None:
        return GpuMemoryReader("nvidia-smi", "device", device)
    return GpuMemoryReader("nvidia-smi", "process", process)


def _jetson_reader() -> GpuMemoryReader | None:
    try:
        board = DEVICE_TREE_MODEL.read_text(errors="replace")
    except OSError:
        return None
    if "jetson" not in board.lower():
        return None
    return GpuMemoryReader("/proc/meminfo", "shared", lambda: meminfo_used_mb(MEMINFO.read_text()))


def open_gpu_reader() -> GpuMemoryReader | None:
    """The first GPU memory reader that works on this machine, or None."""
    for make in (_nvml_reader, _smi_reader, _jetson_reader):
        reader = make()
        if reader is not None:
            return reader
    return None


def peak_rss_mb() -> float:
    """The process's peak resident memory over its whole life, including model loading."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kB, macOS bytes.
    return peak / MIB if sys.platform == "darwin" else peak / 1024


@dataclass
class ResourceTrace:
    """Samples over time: seconds since the start, RSS and GPU memory in MiB, CPU in % of one core."""

    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    cpu_percent: list[float] = field(default_factory=list)
    gpu_mb: list[float | None] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0


class ResourceSampler:
    """Samples this process every ``interval`` seconds on a thread, from ``start`` until ``stop``.

    The thread sleeps between samples and holds the GIL for microseconds, so it does not slow what it measures;
    a slow reader (``nvidia-smi`` takes tens of ms) only makes the GPU column sparser.
    """

    def __init__(self, interval: float = 0.05, gpu: GpuMemoryReader | None = None):
        import psutil

        self.interval = interval
        self.gpu = gpu
        self.trace = ResourceTrace()
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgetrack-resources", daemon=True)

    def _sample(self) -> None:
        t = self.trace
        t.seconds.append(time.perf_counter() - self._t0)
        t.rss_mb.append(self._process.memory_info().rss / MIB)
        t.cpu_percent.append(self._process.cpu_percent(interval=None))
        t.gpu_mb.append(self.gpu.read() if self.gpu else None)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> ResourceSampler:
        self._t0 = time.perf_counter()
        self._cpu0 = sum(self._process.cpu_times()[:2])
        self._process.cpu_percent(interval=None)  # the first call only sets psutil's reference point
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> ResourceTrace:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.trace.cpu_seconds = sum(self._process.cpu_times()[:2]) - self._cpu0
        self.trace.wall_seconds = time.perf_counter() - self._t0
        return self.trace
