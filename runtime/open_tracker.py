"""``open_tracker``: a bundle path or a shipped student's name in, a tracker that owns its backend out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .backends import ignore_note, open_backend
from .bundle import load_bundle
from .pretrained import resolve
from .stopwatch import StageClock
from .tracker import SiameseTracker


def open_tracker(
    bundle: str | Path,
    precision: str = "fp32",
    backend: str = "auto",
    device: str = "cpu",
    threads: int | None = None,
    clock: StageClock | None = None,
    note: Callable[[str], None] = ignore_note,
    long_term: bool = False,
) -> SiameseTracker:
    """The tracker of ``bundle`` (a bundle folder, or the name of a student shipped in ``runtime/pretrained``) on
    the chosen backend (``open_backend``'s arguments); ``long_term`` searches the whole frame for a lost target
    (``SiameseTracker``). Close it, or use it in a ``with`` block::

        with edgetrack.open_tracker("edgetrack-nano-m") as tracker:
            tracker.init(first_frame, (x, y, w, h))
            result = tracker.update(next_frame)
    """
    loaded = load_bundle(resolve(bundle))
    runner = open_backend(loaded, precision, backend=backend, device=device, threads=threads, note=note)
    try:
        return SiameseTracker(loaded.meta, runner, clock=clock, bundle=loaded, long_term=long_term)
    except BaseException:
        runner.close()
        raise
