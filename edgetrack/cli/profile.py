"""``edgetrack profile``: a bundle's latency, memory and CPU on one source, as a report with plots."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import backend_options, finite, open_tracker, parse_box
from .errors import requires


@click.command("profile")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--source", required=True, help="An annotated sequence folder (its first box is the default --init), a video, an image folder, camera:N, csi:N or a stream URL.")
@click.option("--init", "init_box", default=None, help="The target in the first frame: x,y,w,h in pixels [default: the sequence's first ground-truth box].")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Frames to record after the warm-up [default: to the end of the source; 300 from a camera]. In paced mode dropped frames count.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Frames tracked before recording starts.")
@click.option("--mode", type=click.Choice(["offline", "paced"]), default="offline", show_default=True, help="offline: frames back to back. paced: frames arrive at --fps like a camera; late ones are dropped.")
@click.option("--fps", "paced_fps", type=click.FloatRange(min=0, min_open=True), callback=finite, default=30.0, show_default=True, help="Frame rate of paced mode.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), required=True, help="Folder for report.json, report.md, report.html and the PNG plots (replaced if it holds a previous report).")
@backend_options
@requires("report")
def profile_command(bundle: Path, source: str, init_box: str | None, frames: int | None, warmup: int, mode: str, paced_fps: float, report_dir: Path, precision: str, backend: str, device: str, threads: int | None) -> None:
    """Profile a bundle on a source: latency per stage (p50/p95/p99), fps, memory, CPU, model cost and
    environment, written as report.json, report.md and a self-contained report.html with plots.

    \b
    Examples:
      edgetrack profile nanotrack-v2.etb --source ../shared/data/sequences/bag --report runs/profile/v2
      edgetrack profile nanotrack-v2.etb --precision int8 --source clip.mp4 --init 292,112,106,144 --mode paced --fps 30 --report runs/profile/v2-int8
      edgetrack profile nanotrack-v2.etb --source camera:0 --init 200,150,80,80 --frames 600 --report runs/profile/camera
    """
    # imported first, so that a missing extra stops the command before it writes anything
    import matplotlib  # noqa: F401
    import psutil  # noqa: F401

    from edgetrack.runtime.environment import describe_environment
    from edgetrack.runtime.profile import ProfileSettings, open_profile_input, profile_tracker
    from edgetrack.runtime.profile_report import build_report, check_report_dir, write_report
    from edgetrack.runtime.stopwatch import StageClock

    settings = ProfileSettings(frames=frames, warmup=warmup, mode=mode, fps=paced_fps)
    report_dir = check_report_dir(report_dir)
    stream = open_profile_input(source, parse_box(init_box) if init_box else None)
    clock = StageClock()
    with open_tracker(bundle, precision, backend, device, threads, clock=clock) as tracker:
        with click.progressbar(length=stream.frames_to_record(settings), label=f"profile {tracker.meta.name} {precision}", file=sys.stderr) as bar:
            run = profile_tracker(tracker, clock, stream, settings, on_frame=lambda: bar.update(1))
    report = build_report(run, tracker.bundle, precision, tracker.backend.name, describe_environment(tracker.backend.name, threads))
    write_report(report_dir, report)
    click.echo(f"{'stage':<20}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for name, stats in report.latency_ms.items():
        click.echo(f"{name:<20}{stats.p50:>9.2f}{stats.p95:>9.2f}{stats.p99:>9.2f}{stats.mean:>9.2f}")
    memory = report.memory
    click.echo(
        f"{run.frames} frames ({run.dropped} dropped): tracker {run.tracker_fps:.0f} fps, end-to-end {run.end_to_end_fps:.0f} fps; "
        f"RSS peak {memory.rss_peak_mb:.0f} MiB (growth {memory.rss_growth_mb:+.1f}); CPU {report.cpu.utilisation_percent:.0f}% of one core"
    )
    click.echo(f"report in {report_dir}/report.html")
