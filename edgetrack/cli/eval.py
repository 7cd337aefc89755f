"""``edgetrack eval``: a bundle's one-pass accuracy and speed on annotated sequences."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from .common import backend_options, open_tracker


@click.command("eval")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Path(path_type=Path), required=True, help="A sequence folder (OTB or VOT), a video, or a folder of sequences.")
@click.option("--groundtruth", type=click.Path(path_type=Path), default=None, help="Ground truth of a video dataset, when it is not beside the video.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where summary.json and the result files go [default: runs/eval/BUNDLE].")
@backend_options
def eval_command(bundle: Path, dataset: Path, groundtruth: Path | None, out: Path | None, precision: str, backend: str, device: str, threads: int | None) -> None:
    """One-pass evaluation: success AUC, precision@20 px, normalised precision and fps per sequence.

    \b
    Example:
      edgetrack eval nanotrack-v2.etb --dataset ../shared/data/sequences --out runs/v2
    """
    from edgetrack.runtime.datasets import load_dataset
    from edgetrack.runtime.metrics import LostScores

    data = load_dataset(dataset, groundtruth)
    for name, reason in data.skipped:
        click.echo(f"skipping {name}: {reason}", err=True)
    with open_tracker(bundle, precision, backend, device, threads) as tracker:
        results, mean, folder = _evaluate(tracker, data, out or Path("runs") / "eval" / bundle.stem, precision)
    click.echo(f"{'sequence':<24}{'frames':>8}{'AUC':>8}{'P@20':>8}{'nP@0.2':>8}{'fps':>8}{'absent':>8}{'lost@abs':>10}{'lost@pres':>10}")
    for r in results:
        s = r.scores
        click.echo(
            f"{r.name:<24}{r.frames:>8}{s.auc:>8.3f}{s.precision:>8.3f}{s.norm_precision:>8.3f}{r.fps:>8.0f}"
            f"{r.lost.absent_frames:>8}{_share(r.lost.recall):>10}{_share(r.lost.false_alarms):>10}"
        )
    pooled = sum((r.lost for r in results), LostScores(0, 0, 0, 0))
    click.echo(
        f"{'mean':<24}{mean.frames:>8}{mean.auc:>8.3f}{mean.precision:>8.3f}"
        f"{mean.norm_precision:>8.3f}{mean.fps:>8.0f}"
        f"{pooled.absent_frames:>8}{_share(pooled.recall):>10}{_share(pooled.false_alarms):>10}"
    )
    click.echo("AUC, P@20 and nP@0.2 leave out frames whose target is absent; lost@abs / lost@pres: share of those / of the others flagged lost")
    click.echo(f"results in {folder}")


def _evaluate(tracker, data, out: Path, precision: str):
    """Track every sequence of ``data`` into the output folder ``out``: the results, their mean and the folder."""
    from edgetrack.runtime.evaluate import EVAL_TOOL, previous_results, result_names, track_sequence, write_results
    from edgetrack.runtime.output_folder import claim_output

    folder = claim_output(out, EVAL_TOOL, "--out", result_names(data.sequences), previous_results)
    with folder:
        results = []
        total = sum(len(s) - 1 for s in data.sequences)
        with click.progressbar(length=total, label=f"eval {tracker.meta.name}", file=sys.stderr) as bar:
            for sequence in data.sequences:
                results.append(track_sequence(tracker, sequence, on_frame=lambda: bar.update(1)))
        mean = write_results(folder.path, results, tracker.meta.name, precision, tracker.backend.name).mean
        folder.commit(result_names(results))
    return results, mean, folder.path


def _share(value: float) -> str:
    """A share for the table: "-" when there were no frames to take it of."""
    return "-" if math.isnan(value) else f"{value:.0%}"
