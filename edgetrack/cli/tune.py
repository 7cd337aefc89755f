"""``edgetrack tune``: search a bundle's tracking hyper-parameters on one dataset and write the best into a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from edgetrack import defaults

from .common import ClickProgress, backend_options, echo_note
from .errors import requires


@click.command("tune")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Path(path_type=Path), required=True, help="The sequences to tune on, in any layout eval reads (detected): a folder of sequences, one sequence, a video, a GOT-10k / LaSOT / TrackingNet / UAV123 root.")
@click.option("--report-on", type=click.Path(path_type=Path), default=None, help="Other sequences to report the AUC on before and after, to see whether the gain holds.")
@click.option("--trials", type=click.IntRange(min=1), default=defaults.TUNE_TRIALS, show_default=True, help="Trials in all, counting those of earlier runs with this --work; the first tries the bundle's own values.")
@click.option("--seed", type=int, default=defaults.TUNE_SEED, show_default=True, help="Seed of the TPE sampler: the same seed repeats a run.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="The tuned bundle, a copy of BUNDLE with the best values [default: WORK/NAME.etb].")
@click.option("--in-place", is_flag=True, help="Write the best values into BUNDLE itself (never into a shipped student).")
@click.option("--work", type=click.Path(path_type=Path), default=None, help="Where the study (study.journal) and tune.json go; rerun with it to continue [default: runs/tune/NAME].")
@backend_options
@requires("tune")
def tune_command(
    bundle: Path,
    dataset: Path,
    report_on: Path | None,
    trials: int,
    seed: int,
    out: Path | None,
    in_place: bool,
    work: Path | None,
    precision: str,
    backend: str,
    device: str,
    threads: int | None,
) -> None:
    """Search penalty_k, window_influence and lr (Optuna TPE) for the best mean success AUC on --dataset, fit the
    lost threshold to the frames whose target is absent, and write the best values into a bundle.

    The study is kept in WORK/study.journal: the same command run again continues it (a stopped run, or more
    --trials). The AUC before and after is reported on --report-on too, and everything goes to WORK/tune.json.

    \b
    Example:
      edgetrack tune nanotrack-v2.etb --dataset ../shared/data/train \\
          --report-on ../shared/data/benchmark --trials 40 --out nanotrack-v2-tuned.etb
    """
    from edgetrack.runtime.tune import REPORT_FILE, tune

    if out is not None and in_place:
        raise click.UsageError("give --out or --in-place, not both")
    work = work or Path("runs") / "tune" / bundle.name.removesuffix(".etb")

    def show(step) -> None:
        t = step.trial
        click.echo(
            f"trial {step.done}/{step.total} (#{t.number}{', bundle values' if t.baseline else ''}): AUC {t.auc:.4f}  best {step.best_auc:.4f}"
            f"  penalty_k {t.penalty_k:.3f} window_influence {t.window_influence:.3f} lr {t.lr:.3f}"
        )

    progress = ClickProgress()
    try:
        report = tune(
            bundle, dataset, work, trials, seed, report_on, out, in_place,
            precision=precision, backend=backend, device=device, threads=threads,
            on_trial=show, progress=progress, note=echo_note,
        )
    finally:
        progress.close()
    rows = [("tuned on", report.dataset, report.tune_before, report.tune_after)]
    if report.report_before is not None:
        rows.append(("reported on", report.report_on, report.report_before, report.report_after))
    click.echo(f"{'':<32}{'AUC before':>12}{'after':>8}{'lost F1 before':>16}{'after':>8}")
    for label, data, before, after in rows:
        click.echo(f"{label + ' ' + Path(data).name:<32}{before.auc:>12.4f}{after.auc:>8.4f}{_f1(before.lost_f1):>16}{_f1(after.lost_f1):>8}")
    b, a = report.before, report.best
    for name in ("penalty_k", "window_influence", "lr", "lost_threshold"):
        click.echo(f"{name:<18}{getattr(b, name):>10.4f} -> {getattr(a, name):.4f}")
    click.echo(f"tuned bundle: {report.written}")
    click.echo(f"report: {Path(work) / REPORT_FILE}")


def _f1(value: float | None) -> str:
    """An F1 for the table: "-" when no target was absent."""
    return "-" if value is None else f"{value:.3f}"
