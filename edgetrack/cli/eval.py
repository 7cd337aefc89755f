"""``edgetrack eval``: a bundle's accuracy and speed on annotated sequences, by a benchmark's protocol."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from edgetrack import defaults

from .common import backend_options, open_tracker


@click.command("eval")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Path(path_type=Path), required=True, help="A sequence folder (OTB or VOT), a video, a folder of sequences, or a GOT-10k / LaSOT / TrackingNet / UAV123 root.")
@click.option("--layout", type=click.Choice(defaults.DATASET_LAYOUTS), default=defaults.DATASET_LAYOUT, show_default=True, help="The dataset's layout; auto tells it from the files. GOT-10k, LaSOT, TrackingNet and UAV123 also get their official scores (benchmark.json, where every sequence is annotated); GOT-10k and TrackingNet also their server's result folder and zip.")
@click.option("--groundtruth", type=click.Path(path_type=Path), default=None, help="Ground truth of a video dataset, when it is not beside the video.")
@click.option("--protocol", type=click.Choice(defaults.PROTOCOLS), default=defaults.PROTOCOL, show_default=True, help="ope: one pass from the first box. vot: VOT's supervised protocol, re-initialised 5 frames after each failure, scored by accuracy, robustness and EAO.")
@click.option("--long-term", is_flag=True, help="Once the target is lost, search the whole frame for it and re-acquire it above a higher threshold.")
@click.option("--realtime", type=click.FloatRange(min=0, min_open=True), default=None, metavar="FPS", help="Latency-aware: frames arrive at FPS whether the tracker is free or not; it takes the newest, and the frames it misses keep the last box.")
@click.option("--permitted-latency", type=click.FloatRange(0, 1), default=defaults.PERMITTED_LATENCY, show_default=True, help="With --realtime: how late, in frame periods, a result may be and still count for its frame (e-LAE); 0 is LAE's strict rule.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where summary.json and the result files go [default: runs/eval/BUNDLE].")
@backend_options
def eval_command(
    bundle: Path,
    dataset: Path,
    layout: str,
    groundtruth: Path | None,
    protocol: str,
    long_term: bool,
    realtime: float | None,
    permitted_latency: float,
    out: Path | None,
    precision: str,
    backend: str,
    device: str,
    threads: int | None,
) -> None:
    """Evaluate a bundle: success AUC, precision@20 px, normalised precision and fps per sequence (one pass), or
    VOT's accuracy, robustness and EAO (--protocol vot).

    \b
    Examples:
      edgetrack eval nanotrack-v2.etb --dataset ../shared/data/benchmark --out runs/v2
      edgetrack eval edgetrack-nano-m --dataset GOT-10k/val --out runs/got10k-val
      edgetrack eval edgetrack-nano-m --dataset ../shared/data/benchmark --protocol vot
      edgetrack eval edgetrack-nano-s --dataset ../shared/data/benchmark --realtime 30 --threads 1
      edgetrack eval nanotrack-v2.etb --dataset ../shared/data/benchmark/TLD_pedestrian3 --long-term
    """
    from edgetrack.runtime.datasets import load_dataset

    if protocol == "vot" and realtime is not None:
        raise click.UsageError("--realtime applies to the one-pass protocol: leave out --protocol vot or --realtime")
    data = load_dataset(dataset, groundtruth, layout)
    for name, reason in data.skipped:
        click.echo(f"skipping {name}: {reason}", err=True)
    unscored = [s.name for s in data.sequences if not s.scored]
    if unscored and (protocol == "vot" or realtime is not None):
        raise click.UsageError(f"sequence {unscored[0]} has ground truth on its first frame only (a test split): evaluate it with the one-pass protocol, without --realtime")
    folder = out or Path("runs") / "eval" / bundle.stem
    with open_tracker(bundle, precision, backend, device, threads, long_term=long_term) as tracker:
        if protocol == "vot":
            from .eval_vot import evaluate_vot

            evaluate_vot(tracker, data, folder, groundtruth)
            return
        results, mean, written = _evaluate(tracker, data, folder, precision, realtime, permitted_latency)
    _print_table(results, mean, realtime)
    click.echo(f"results in {written}")


def _evaluate(tracker, data, out: Path, precision: str, realtime: float | None, permitted_latency: float):
    """Track every sequence of ``data`` into the output folder ``out``: the results, their mean and the folder."""
    from edgetrack.runtime.evaluate import EVAL_TOOL, previous_results, result_names, track_sequence, write_results
    from edgetrack.runtime.output_folder import claim_output
    from edgetrack.runtime.realtime import track_sequence_realtime
    from edgetrack.runtime.result_files import OFFICIAL_NAMES, write_official

    names = result_names(data.sequences) + list(OFFICIAL_NAMES.get(data.layout, ()))
    folder = claim_output(out, EVAL_TOOL, "--out", names, previous_results)
    with folder:
        results = []
        total = sum(len(s) - 1 for s in data.sequences)
        label = f"eval {tracker.meta.name}" + (f" at {realtime:g} fps" if realtime is not None else "")
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            for sequence in data.sequences:
                step = lambda: bar.update(1)  # noqa: E731
                if realtime is None:
                    results.append(track_sequence(tracker, sequence, on_frame=step))
                else:
                    results.append(track_sequence_realtime(tracker, sequence, realtime, permitted_latency, on_frame=step))
        mean = write_results(folder.path, results, tracker.meta.name, precision, tracker.backend.name).mean
        official = write_official(folder.path, data, results)
        folder.commit(result_names(results) + list(official))
    return results, mean, folder.path


def _print_table(results, mean, realtime: float | None) -> None:
    from edgetrack.runtime.metrics import LostScores

    extra = f"{'skipped':>9}" if realtime is not None else ""
    click.echo(f"{'sequence':<24}{'frames':>8}{'AUC':>8}{'P@20':>8}{'nP@0.2':>8}{'fps':>8}{'absent':>8}{'lost@abs':>10}{'lost@pres':>10}{extra}")
    for r in results:
        skipped = f"{r.frames - 1 - r.updates:>9}" if realtime is not None else ""
        if r.scores is None:
            click.echo(f"{r.name:<24}{r.frames:>8}{'-':>8}{'-':>8}{'-':>8}{r.fps:>8.0f}{'-':>8}{'-':>10}{'-':>10}{skipped}")
            continue
        s = r.scores
        click.echo(
            f"{r.name:<24}{r.frames:>8}{s.auc:>8.3f}{s.precision:>8.3f}{s.norm_precision:>8.3f}{r.fps:>8.0f}"
            f"{r.lost.absent_frames:>8}{_share(r.lost.recall):>10}{_share(r.lost.false_alarms):>10}{skipped}"
        )
    pooled = sum((r.lost for r in results if r.lost is not None), LostScores(0, 0, 0, 0))
    click.echo(
        f"{'mean':<24}{mean.frames:>8}{mean.auc:>8.3f}{mean.precision:>8.3f}"
        f"{mean.norm_precision:>8.3f}{mean.fps:>8.0f}"
        f"{pooled.absent_frames:>8}{_share(pooled.recall):>10}{_share(pooled.false_alarms):>10}"
    )
    click.echo("AUC, P@20 and nP@0.2 leave out frames whose target is absent; lost@abs / lost@pres: share of those / of the others flagged lost")
    if realtime is not None:
        click.echo(f"realtime at {realtime:g} fps: skipped = frames the tracker never saw, which kept the last box; fps is the tracker's own")


def _share(value: float) -> str:
    """A share for the table: "-" when there were no frames to take it of."""
    return "-" if math.isnan(value) else f"{value:.0%}"
