"""``edgetrack demo``: the whole pipeline on the synthetic world, written as a web page."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import requires


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True, help="Folder for index.html, summary.json, bundles, runs, data and reports; a previous demo's files there are replaced.")
@click.option("--teacher", default=None, help="NAME:CKPT of a teacher to distil from instead of training one, e.g. nanotrack-v3:nanotrackv3.pth.")
@requires("train", "deploy", "report")
def demo_command(out: Path, teacher: str | None) -> None:
    """The whole pipeline on the synthetic world, with nothing to download, in about 6 minutes on 2 CPU cores:
    train a small teacher (or use --teacher), distil two students with TSsKD and train the same student alone,
    export them all, build int8 for the students, evaluate and profile every model and precision, and write
    DIR/index.html (success plots, a table of size, speed and AUC, an annotated clip) and DIR/summary.json.

    \b
    Examples:
      edgetrack demo --out build/demo
      edgetrack demo --out build/demo-v3 --teacher nanotrack-v3:../shared/data/models/nanotrack/v3/nanotrackv3.pth
    """
    # imported first, so that a missing extra stops the command before it writes anything
    import matplotlib  # noqa: F401
    import onnxslim  # noqa: F401
    import psutil  # noqa: F401

    from edgetrack.demo import DemoSettings, run_demo

    summary = run_demo(out, DemoSettings(teacher=teacher))
    click.echo(f"{'model':<22}{'role':<10}{'precision':<11}{'AUC':>7}{'fps':>7}{'p50 ms':>8}{'RSS MiB':>9}")
    for row in summary["table"]:
        numbers = f"{row['auc']:>7.3f}{row['fps']:>7.0f}" + (f"{row['p50_ms']:>8.2f}{row['rss_mb']:>9.0f}" if row["status"] == "ok" else "  refused by the accuracy gate")
        click.echo(f"{row['model']:<22}{row['key']:<10}{row['precision']:<11}{numbers}")
    click.echo(summary["comparison"]["sentence"])
    click.echo(f"finished in {summary['timings_s']['total']:.0f} s; open {out / 'index.html'}")
