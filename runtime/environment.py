"""What a measurement ran on: CPU, cores, OS, library versions, and the GPU, driver and TensorRT where present.

Every probe is optional and fails quietly to None: a report must describe a Raspberry Pi as well as a DGX.
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
from pathlib import Path

import cv2
import numpy as np

import edgetrack

#: The Jetson's board name, which JetPack exposes through the device tree.
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
L4T_RELEASE = Path("/etc/nv_tegra_release")


def cpu_model() -> str:
    """The CPU's marketing name, e.g. "Intel(R) Xeon(R) CPU @ 2.20GHz", or the architecture where unknown."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            fields = dict(line.split(":", 1) for line in cpuinfo if ":" in line)
    except OSError:
        fields = {}
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    # x86 says "model name" (its "model" is a number); ARM kernels say "Model" or "Hardware", if anything.
    for key in ("model name", "Model", "Hardware"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _version(module: str) -> str | None:
    try:
        imported = importlib.import_module(module)
        # pycuda names its version differently from everyone else.
        return getattr(imported, "__version__", None) or getattr(imported, "VERSION_TEXT", None)
    except Exception:  # noqa: BLE001 - a broken optional install must not break the report
        return None


def nvidia_smi(*query: str) -> list[list[str]] | None:
    """Rows of ``nvidia-smi --query-...=...`` in CSV without header or units; None without a working nvidia-smi."""
    try:
        done = subprocess.run(
            ["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]


def gpu_description() -> dict | None:
    """The first NVIDIA GPU, its driver and memory; the board name on a Jetson, whose GPU nvidia-smi may not list."""
    rows = nvidia_smi("--query-gpu=name,driver_version,memory.total")
    if rows:
        name, driver, total = (rows[0] + ["", "", ""])[:3]
        return {"name": name, "driver": driver, "memory_total_mb": float(total) if total.replace(".", "").isdigit() else None}
    board = _read_text(DEVICE_TREE_MODEL)
    if board and "jetson" in board.lower():
        return {"name": board, "driver": _read_text(L4T_RELEASE), "memory_total_mb": None}
    return None


def describe_environment(backend: str, threads: int | None) -> dict:
    """The machine and software a measurement ran on, as plain JSON-ready values."""
    libraries = {
        "edgetrack": edgetrack.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": _version("onnxruntime"),
        "tensorrt": _version("tensorrt"),
        "pycuda": _version("pycuda"),
    }
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "opencv_threads": cv2.getNumThreads(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "board": _read_text(DEVICE_TREE_MODEL),
        "backend": backend,
        "libraries": libraries,
        "gpu": gpu_description(),
    }
