"""What several verbs share: the options of a command that runs a bundle, the checks of option values, the
tracker such a command opens, and the default parity data of an export."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import click

from edgetrack import defaults


def echo_note(line: str) -> None:
    """The CLI's ``note`` for library code: one line on stderr."""
    click.echo(line, err=True)


class ClickProgress:
    """The CLI's ``runtime.progress.Progress``: a click progress bar on stderr for each task."""

    def __init__(self) -> None:
        self._bar = None

    def start(self, total: int, label: str) -> None:
        """Open a progress bar of ``total`` steps labelled ``label``, closing any still open."""
        self.close()
        self._bar = click.progressbar(length=total, label=label, file=sys.stderr)
        self._bar.__enter__()

    def advance(self, n: int = 1) -> None:
        """Move the open bar on by ``n`` steps."""
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        """Finish the open bar, if any."""
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.__exit__(None, None, None)


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets nan and inf through: they fail no comparison."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number.", ctx=ctx, param=param)
    return value


def parse_box(text: str) -> tuple[float, float, float, float]:
    """The x,y,w,h box of an ``--init`` option."""
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise click.BadParameter(f"expected x,y,w,h (four numbers), got {text!r}")
    return values


def backend_options(command):
    """The options every command that runs a bundle shares."""
    command = click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads of the backend: ONNX Runtime's, or OpenCV's (process-wide) with --backend opencv; 1 emulates a one-core board [default: the backend's own choice].")(command)
    command = click.option("--device", type=click.Choice(defaults.DEVICES), default=defaults.DEVICE, show_default=True, help="ONNX Runtime execution provider.")(command)
    command = click.option("--backend", type=click.Choice(defaults.BACKENDS), default=defaults.BACKEND, show_default=True, help="auto: TensorRT engines when built for this machine, else ONNX Runtime. opencv: OpenCV DNN, slower but ~50 MiB leaner.")(command)
    command = click.option("--precision", type=click.Choice(defaults.PRECISIONS), default=defaults.PRECISION, show_default=True, help="Which of the bundle's models to run.")(command)
    return command


def open_tracker(bundle_path: Path, precision: str, backend: str, device: str, threads: int | None, clock=None, long_term: bool = False):
    """``edgetrack.open_tracker`` with the command's options; a backend it passes over is one note on stderr."""
    from edgetrack.runtime.open_tracker import open_tracker as open_runtime_tracker

    def note(line: str) -> None:
        click.echo(f"note: {line}", err=True)

    return open_runtime_tracker(
        bundle_path, precision, backend=backend, device=device, threads=threads, clock=clock, note=note, long_term=long_term
    )


def default_parity_data() -> Path | None:
    """The shared sequences when this machine has them; otherwise export checks parity on random crops."""
    folder = Path(os.environ.get("EDGETRACK_DATA", "../shared/data")) / "sequences"
    return folder if folder.is_dir() else None
