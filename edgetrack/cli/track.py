"""``edgetrack track``: one target followed through a video, an image folder, a camera or a stream."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import backend_options, open_tracker, parse_box


@click.command("track")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--source", required=True, help="A video file, a folder of images, camera:N (V4L2), csi:N (Jetson CSI camera) or an rtsp:// or http:// stream.")
@click.option("--init", "init_box", default=None, help="The target in the first frame: x,y,w,h in pixels [default: drag a box in the window].")
@click.option("--results", type=click.Path(path_type=Path), default=None, help="Write one x,y,w,h,score,lost line per frame here (score: the calibrated confidence that lost compares with the bundle's lost_threshold).")
@click.option("--save", type=click.Path(path_type=Path), default=None, help="Record the annotated stream (.mp4 or .avi).")
@click.option("--long-term", is_flag=True, help="Once the target is lost, search the whole frame for it and re-acquire it above a higher threshold.")
@click.option("--show/--no-show", default=None, help="Show the annotated stream in a window (r: select the target again, q: quit) [default: when a display exists]. --no-show is headless.")
@backend_options
def track_command(
    bundle: Path, source: str, init_box: str | None, results: Path | None, save: Path | None, long_term: bool, show: bool | None, precision: str, backend: str, device: str, threads: int | None
) -> None:
    """Track one target through a video, an image folder, a camera or a stream.

    Frames are read on a thread: a live source keeps only the newest frame, so latency stays bounded when the
    tracker is slower than the camera, and a stream that drops is reopened with a growing delay. Ctrl-C (exit 130)
    or SIGTERM (exit 143, a service stop) ends cleanly with every file closed and playable.

    \b
    Examples:
      edgetrack track nanotrack-v2.etb --source ../shared/data/videos/bag.avi --init 292,112,106,144 --save bag.mp4 --no-show
      edgetrack track nanotrack-v2.etb --source camera:0                     # drag a box around the target
      edgetrack track nanotrack-v2.etb --source csi:0 --init 600,300,120,160 --results boxes.txt --no-show
      edgetrack track nanotrack-v2.etb --source rtsp://192.168.1.20:8554/cam --save drone.mp4
      edgetrack track edgetrack-nano-m --source drone.mp4 --init 600,300,120,160 --long-term --no-show   # re-find a lost target
    """
    from edgetrack.runtime.sources import open_source
    from edgetrack.runtime.track_session import track_stream

    box = parse_box(init_box) if init_box else None
    frames = open_source(source)
    with open_tracker(bundle, precision, backend, device, threads, long_term=long_term) as tracker:
        summary = track_stream(tracker, frames, box, results=results, save=save, show=show)
    click.echo(summary)
    if summary.exit_code:
        sys.exit(summary.exit_code)
