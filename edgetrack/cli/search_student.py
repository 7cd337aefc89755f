"""``edgetrack search-student``: a student's layer widths searched by reinforcement learning."""

from __future__ import annotations

from pathlib import Path

import click

from edgetrack import defaults

from .common import finite
from .errors import requires


@click.command("search-student")
@click.option("--teacher", required=True, help="NAME:CHECKPOINT of the teacher to shrink, e.g. nanotrack-v3:nanotrackv3.pth.")
@click.option("--target-compression", type=click.FloatRange(min=1, min_open=True), callback=finite, default=defaults.SEARCH_TARGET_COMPRESSION, show_default=True, help="Teacher parameters / student parameters wanted.")
@click.option("--tolerance", type=click.FloatRange(min=0), callback=finite, default=defaults.SEARCH_TOLERANCE, show_default=True, help="Relative miss of the target that costs no reward.")
@click.option("--episodes", type=click.IntRange(min=1), default=defaults.SEARCH_EPISODES, show_default=True, help="Policy updates.")
@click.option("--students-per-episode", type=click.IntRange(min=1), default=defaults.SEARCH_STUDENTS_PER_EPISODE, show_default=True, help="Students sampled and scored per episode.")
@click.option("--proxy-steps", type=click.IntRange(min=1), default=defaults.SEARCH_PROXY_STEPS, show_default=True, help="Distillation steps that score each student (teacher-student losses).")
@click.option("--batch-size", type=click.IntRange(min=1), default=defaults.SEARCH_PROXY_BATCH_SIZE, show_default=True, help="Pairs per proxy step.")
@click.option("--data", "data", multiple=True, help="Training data of the proxy distillation, as for distill --data [default: synthetic].")
@click.option("--val", "val", multiple=True, type=click.Path(path_type=Path, exists=True), help="Held-apart validation sequences that score the students [default: synthetic sequences no training pair comes from].")
@click.option("--seed", type=int, default=defaults.SEED, show_default=True, help="Seed of the policy's samples and of the proxy pairs.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the search in --out from its last episode.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Search folder: best.yaml, log.csv, search.html, search.pt.")
@requires("train", "report")
def search_student_command(teacher: str, target_compression: float, tolerance: float, episodes: int, students_per_episode: int, proxy_steps: int, batch_size: int, data: tuple[str, ...], val: tuple[Path, ...], seed: int, device: str, resume: bool, quiet: bool, out: Path) -> None:
    """Search a student's layer widths by reinforcement learning: an LSTM policy picks a shrink ratio per width
    group of the teacher; each student is shrunk, distilled briefly and scored on held-apart sequences, with the
    reward C(2-C) * AUC_student / AUC_teacher (C = 1 - params ratio), penalised off the compression target.

    \b
    Example:
      edgetrack search-student --teacher nanotrack-v3:../shared/data/models/nanotrack/v3/nanotrackv3.pth \\
          --target-compression 8 --episodes 12 --out runs/search/v3-8x
      edgetrack distill --teacher nanotrack-v3:nanotrackv3.pth --students runs/search/v3-8x/best.yaml
    """
    from edgetrack.distill.search.loop import SearchConfig
    from edgetrack.distill.search.proxy import ProxySettings
    from edgetrack.distill.search.reward import RewardConfig
    from edgetrack.distill.search.student_search import StudentSearch, search_student

    request = StudentSearch(
        teacher=teacher,
        out=out,
        search=SearchConfig(
            episodes=episodes,
            students_per_episode=students_per_episode,
            seed=seed,
            reward=RewardConfig(target_compression=target_compression, tolerance=tolerance),
        ),
        proxy=ProxySettings(steps=proxy_steps, batch_size=batch_size, data=tuple(data) or ("synthetic",), validation=tuple(str(p) for p in val), seed=seed),
        resume=resume,
        device=device,
    )
    outcome = search_student(request, progress=not quiet)
    best = outcome.best
    click.echo(
        f"best student: {best.params:,} parameters, {best.compression:.2f}x smaller, validation AUC {best.auc:.3f} "
        f"(teacher {outcome.teacher_auc:.3f}), reward {best.reward:.3f}"
    )
    click.echo(f"wrote {outcome.best_yaml} and {outcome.report}")
    click.echo(f"distill it with: edgetrack distill --teacher {teacher} --students {outcome.best_yaml}")
