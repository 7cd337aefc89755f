"""The ``edgetrack`` command line: one verb per job, each in a module of its own.

Stages are imported inside each command, so ``edgetrack track`` and ``edgetrack eval`` load only the runtime
floor (no torch), and ``edgetrack --help`` loads nothing heavy at all.
"""

from __future__ import annotations

import os

import click

from edgetrack import __version__

from .bench import bench_command
from .build_engine import build_engine_command
from .compare import compare_command
from .demo import demo_command
from .errors import EdgetrackGroup
from .eval import eval_command
from .export import export_command
from .import_nanotrack import import_nanotrack_command
from .models import models_command
from .profile import profile_command
from .search_student import search_student_command
from .track import track_command
from .training import distill_command, train_command
from .tune import tune_command

# FFmpeg and OpenCV print their own diagnostics to stderr (e.g. "moov atom not found" before our one-line
# error); keep stderr for edgetrack's messages unless the user asks for theirs.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


VERBS = (
    models_command,
    export_command,
    train_command,
    distill_command,
    search_student_command,
    import_nanotrack_command,
    build_engine_command,
    compare_command,
    eval_command,
    tune_command,
    profile_command,
    track_command,
    bench_command,
    demo_command,
)


@click.group(cls=EdgetrackGroup, commands=VERBS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetrack")
@click.option("--debug", is_flag=True, help="Print the whole chain of exceptions behind a one-line error (as EDGETRACK_DEBUG=1).")
def main(debug: bool) -> None:
    """Distil Siamese trackers and run them on the edge.

    \b
    Quick start:
      edgetrack import-nanotrack backbone.onnx head.onnx -o nanotrack-v2.etb
      edgetrack eval nanotrack-v2.etb --dataset ../shared/data/sequences
      edgetrack track nanotrack-v2.etb --source video.mp4 --init 100,80,40,60 --save out.mp4
    """
    if debug:
        os.environ["EDGETRACK_DEBUG"] = "1"
