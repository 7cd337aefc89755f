"""``edgetrack compare``: a bundle's precisions and backends against each other, output by output, on real crops."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgetrack import defaults

if TYPE_CHECKING:
    from edgetrack.runtime.compare import Comparison

#: every backend but ``auto``: a comparison names what it runs
BACKENDS = tuple(b for b in defaults.BACKENDS if b != "auto")
#: Search crops compared unless ``--frames`` says otherwise.
DEFAULT_FRAMES = 8


def _label(precision: str, backend: str) -> str:
    return f"{precision} {backend}"


def _table(rows: list[tuple[str, Comparison]]) -> list[str]:
    """One line per output of each candidate: max abs, max rel (of the output's scale) and p99 abs."""
    width = max(len("candidate"), *(len(label) for label, _ in rows))
    names = max(len("output"), *(len(o.name) for _, c in rows for o in c.outputs))
    lines = [f"{'candidate':<{width}}  {'output':<{names}}  {'max abs':>9}  {'max rel':>9}  {'p99 abs':>9}"]
    for label, comparison in rows:
        for index, o in enumerate(comparison.outputs):
            shown = label if index == 0 else ""
            lines.append(f"{shown:<{width}}  {o.name:<{names}}  {o.max_abs:>9.2e}  {o.max_rel:>9.2e}  {o.p99_abs:>9.2e}")
    return lines


@click.command("compare")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path))
@click.option("--precision", "precisions", multiple=True, type=click.Choice(defaults.PRECISIONS), default=(defaults.PRECISION,), show_default=True, help="A precision to run; repeatable.")
@click.option("--backend", "backends", multiple=True, type=click.Choice(BACKENDS), default=("onnxruntime",), show_default=True, help="A backend to run every precision on; repeatable.")
@click.option("--dataset", type=click.Path(path_type=Path, exists=True), required=True, help="Annotated sequences; the crops are the tracker's crops of the first one.")
@click.option("--frames", type=click.IntRange(min=1), default=DEFAULT_FRAMES, show_default=True, help="Search crops, spread evenly over the sequence.")
def compare_command(bundle_path: Path, precisions: tuple[str, ...], backends: tuple[str, ...], dataset: Path, frames: int) -> None:
    """Run a bundle's precisions on its backends over the same real crops, and print how far each output of each
    (the template features, then the search outputs) lies from the first one's, the reference: the largest
    absolute difference, that difference over the output's largest magnitude (max rel), and the 99th percentile
    of the absolute differences. Every precision runs on every backend.

    \b
    Example:
      edgetrack compare edgetrack-nano-s --backend onnxruntime --backend opencv --dataset ../shared/data/sequences/Crossing
      edgetrack compare nanotrack-v2.etb --precision fp32 --precision int8 --dataset ../shared/data/sequences
    """
    from edgetrack.runtime.backends import open_backend
    from edgetrack.runtime.bundle import load_bundle
    from edgetrack.runtime.compare import compare, real_crops
    from edgetrack.runtime.errors import InputError
    from edgetrack.runtime.pretrained import resolve

    runs = list(dict.fromkeys((precision, backend) for precision in precisions for backend in backends))
    if len(runs) < 2:
        raise InputError("nothing to compare: give a second --precision or --backend, e.g. --precision fp32 --precision int8")
    bundle = load_bundle(resolve(bundle_path))
    crops = real_crops(bundle.meta, dataset, frames)
    (precision, backend), rows = runs[0], []
    with open_backend(bundle, precision, backend=backend) as reference:
        for candidate_precision, candidate_backend in runs[1:]:
            with open_backend(bundle, candidate_precision, backend=candidate_backend) as candidate:
                rows.append((_label(candidate_precision, candidate_backend), compare(reference, candidate, crops)))
    click.echo(
        f"{bundle.meta.name}: reference {_label(precision, backend)} ({reference.name}), "
        f"on 1 exemplar and {len(crops.x)} search crops of {crops.origin}"
    )
    for line in _table(rows):
        click.echo(line)
