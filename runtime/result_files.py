"""The result files each benchmark's toolkit or evaluation server reads.

- OTB, UAV123, LaSOT: ``FOLDER/NAME.txt``, one ``x,y,w,h`` line per frame (got10k's ``ExperimentOTB._record``;
  the LaSOT toolkit reads it with ``dlmread``).
- GOT-10k: ``FOLDER/NAME/NAME_001.txt`` (boxes) and ``FOLDER/NAME/NAME_time.txt`` (seconds per frame), as
  got10k's ``ExperimentGOT10k._record`` writes them, plus ``FOLDER.zip`` beside the folder holding the ``NAME/``
  folders at its root, as its ``report`` on the test split compresses them for the evaluation server.
- TrackingNet: ``FOLDER/NAME.txt`` plus ``FOLDER.zip`` with the ``NAME.txt`` files at its root, no folder, as the
  TrackingNet evaluation server expects.

Boxes are written with three decimals and times with eight, the formats got10k's ``np.savetxt`` calls use.
``edgetrack eval`` writes the folders of the benchmarks with a server (GOT-10k, TrackingNet) through
``write_official``; for OTB, UAV123 and LaSOT the ``NAME.txt`` files it writes beside ``summary.json``
(``evaluate.write_results``, two decimals) are what their toolkits read.
The folder is built beside its place and swapped in by rename, and the zip is written whole to a temporary file and
renamed, so no reader sees half of either; an existing ``FOLDER`` is replaced whole, so the caller decides whether
it may be (see ``output_folder``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .benchmark_metrics import BENCHMARKS, benchmark_summary, frame_times
from .errors import InputError, OutputError
from .files import current_umask, swap_folder, write_atomic

if TYPE_CHECKING:
    from .datasets import Dataset
    from .evaluate import SequenceResult

#: The benchmarks whose results are also zipped for an evaluation server.
ZIPPED = ("got10k", "trackingnet")
# A fixed time stamp keeps a zip's bytes the same for the same results.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BenchmarkFiles:
    """What ``write_benchmark_files`` wrote: the result folder, and the zip beside it where the benchmark has one."""

    benchmark: str
    folder: Path
    archive: Path | None

    @property
    def names(self) -> tuple[str, ...]:
        """The entries written into the folder's parent, for an output folder's manifest."""
        return (self.folder.name,) + ((self.archive.name,) if self.archive else ())

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "folder": str(self.folder), "archive": str(self.archive) if self.archive else None}


def format_boxes(boxes: np.ndarray) -> str:
    """``x,y,w,h`` lines with three decimals: got10k's ``np.savetxt(fmt='%.3f', delimiter=',')``."""
    return "".join(f"{x:.3f},{y:.3f},{w:.3f},{h:.3f}\n" for x, y, w, h in np.asarray(boxes, dtype=np.float64))


def format_times(times: np.ndarray) -> str:
    """One number of seconds per line with eight decimals: got10k's ``np.savetxt(fmt='%.8f')``."""
    return "".join(f"{t:.8f}\n" for t in np.asarray(times, dtype=np.float64).reshape(-1))


def _checked_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise InputError(f"sequence name {name!r} cannot name a result file: give names without path separators")
    return name


def benchmark_layout(
    benchmark: str, results: Iterable[SequenceResult], times: Mapping[str, np.ndarray] | None = None
) -> dict[str, str]:
    """The text of every file of ``benchmark``'s result folder, by path inside it. GOT-10k's times are ``times``
    per sequence, else ``benchmark_metrics.frame_times``."""
    if benchmark not in BENCHMARKS:
        raise InputError(f"unknown benchmark {benchmark!r}: choose one of {', '.join(BENCHMARKS)}")
    results = list(results)
    if not results:
        raise InputError(f"no results to write for {benchmark}: track at least one sequence")
    if benchmark != "got10k":
        return {f"{_checked_name(r.name)}.txt": format_boxes(r.boxes) for r in results}
    times = times or {}
    files = {}
    for r in results:
        name = _checked_name(r.name)
        seconds = np.asarray(times[name], dtype=np.float64).reshape(-1) if name in times else frame_times(r)
        if len(seconds) != len(r.boxes):
            raise InputError(f"sequence {name}: {len(seconds)} per-frame times for {len(r.boxes)} frames; give one time per frame")
        files[f"{name}/{name}_001.txt"] = format_boxes(r.boxes)
        files[f"{name}/{name}_time.txt"] = format_times(seconds)
    return files


def zip_bytes(files: Mapping[str, str]) -> bytes:
    """A zip of ``files`` (path inside the zip -> text) with each folder's own entry before its files, as
    ``shutil.make_archive`` writes them; the same files give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        folders = sorted({path.rsplit("/", 1)[0] + "/" for path in files if "/" in path})
        for folder in folders:
            archive.writestr(zipfile.ZipInfo(folder, _ZIP_TIME), "")
        for path in sorted(files):
            info = zipfile.ZipInfo(path, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o666 & ~current_umask()) << 16
            archive.writestr(info, files[path])
    return buffer.getvalue()


def replace_folder(folder: Path, files: Mapping[str, str]) -> None:
    """Make ``folder`` hold exactly ``files`` (path inside it -> text): built in a temporary sibling, then swapped
    into place (``files.swap_folder``)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file: give a folder path for the result files")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        os.chmod(staging, 0o777 & ~current_umask())
        for path, text in files.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        swap_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_benchmark_files(
    benchmark: str, folder: Path, results: Iterable[SequenceResult], times: Mapping[str, np.ndarray] | None = None
) -> BenchmarkFiles:
    """Write ``benchmark``'s result files for ``results`` into ``folder`` (replaced whole) and, for GOT-10k and
    TrackingNet, ``FOLDER.zip`` beside it for the evaluation server."""
    folder = Path(folder)
    files = benchmark_layout(benchmark, results, times)
    archive = folder.with_name(f"{folder.name}.zip") if benchmark in ZIPPED else None
    try:
        replace_folder(folder, files)
        if archive is not None:
            write_atomic(archive, zip_bytes(files))
    except OSError as exc:
        raise OutputError(f"cannot write {benchmark} results to {folder}: {exc.strerror or exc}; choose another --out") from None
    return BenchmarkFiles(benchmark, folder, archive)


#: What ``write_official`` may write into an evaluation folder for each dataset layout, beside ``summary.json``
#: and the ``NAME.txt`` files: the benchmark's own scores and, where it has one, its server's result folder and zip.
OFFICIAL_NAMES: dict[str, tuple[str, ...]] = {
    "otb": (),
    "uav123": ("benchmark.json",),
    "lasot": ("benchmark.json",),
    "got10k": ("benchmark.json", "got10k", "got10k.zip"),
    "trackingnet": ("benchmark.json", "trackingnet", "trackingnet.zip"),
}


def write_official(folder: Path, dataset: Dataset, results: Iterable[SequenceResult]) -> list[str]:
    """Write ``dataset``'s benchmark files into the evaluation folder ``folder``: ``benchmark.json`` (its official
    scores over the annotated sequences) and its server's result folder and zip (of the test split's sequences when
    the dataset has any, else of all). The names written."""
    results = list(results)
    annotated = {s.name for s in dataset.sequences if s.scored}
    written: list[str] = []
    if dataset.layout in ZIPPED:
        # A root holding both splits (TrackingNet's TRAIN_k beside TEST): the server takes the test split alone.
        server = [r for r in results if r.name not in annotated] or results
        written += write_benchmark_files(dataset.layout, folder / dataset.layout, server).names
    scored = [r for r in results if r.name in annotated]
    if OFFICIAL_NAMES[dataset.layout] and scored:
        scores = benchmark_summary(dataset.layout, scored, [s for s in dataset.sequences if s.scored])
        try:
            write_atomic(folder / "benchmark.json", json.dumps(scores.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise OutputError(f"cannot write {folder / 'benchmark.json'}: {exc.strerror or exc}; choose another --out") from None
        written.append("benchmark.json")
    return written
