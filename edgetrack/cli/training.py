"""``edgetrack train`` and ``edgetrack distill``: the two verbs that train, and the options they share."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edgetrack import defaults

from .errors import requires


def training_options(command):
    """The options ``train`` and ``distill`` share; each overrides the same setting of ``--config``."""
    options = [
        click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None, help="YAML settings (see distill/config.py for every field); options below override it."),
        click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder: checkpoints, log.csv, tensorboard/, history.json [default: runs/COMMAND/NAME]."),
        click.option("--data", "data", multiple=True, help="Training data, repeatable: synthetic[:N], unlabeled:VIDEO|DIR, sequences:DIR (OTB/VOT folders), got10k:PATH, lasot:PATH, trackingnet:PATH, vid:PATH, coco:JSON; append @WEIGHT for its share [default: synthetic]."),
        click.option("--val", "val", multiple=True, type=click.Path(path_type=Path, exists=True), help="Validation sequences, repeatable (folders or videos with ground truth) [default: synthetic sequences]."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"Epochs [default: {defaults.EPOCHS}]."),
        click.option("--steps", "steps", type=click.IntRange(min=1), default=None, help=f"Steps per epoch [default: {defaults.STEPS_PER_EPOCH}]."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help=f"Pairs per step and per process [default: {defaults.BATCH_SIZE}]."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help=f"Peak learning rate [default: {defaults.LR}]."),
        click.option("--optimizer", type=click.Choice(defaults.OPTIMIZERS), default=None, help=f"Optimiser [default: {defaults.OPTIMIZER}]."),
        click.option("--workers", type=click.IntRange(min=0), default=None, help=f"Processes that make pairs besides training [default: {defaults.WORKERS}; 0: the training process makes them, the fastest on a 2-core CPU]."),
        click.option("--seed", type=int, default=None, help=f"Seed of the pairs and the initialisation [default: {defaults.SEED}]."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True, help="auto: CUDA when available."),
        click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint, exactly (its settings come from the checkpoint)."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_training(command: str, out: Path | None, default_name: str, teacher: str | None, students: tuple[str, ...], overrides: dict, options: dict) -> None:
    """Build the run from the options, train, and print where everything went. Stopped by a signal, the exit
    code is the shell's (143 for SIGTERM, 130 for Ctrl-C) after the checkpoint is saved."""
    from edgetrack.distill.config import load_config
    from edgetrack.distill.trainer import RunSpec, run

    settings = {
        "epochs": options["epochs"],
        "steps_per_epoch": options["steps"],
        "batch_size": options["batch_size"],
        "seed": options["seed"],
        "optim.lr": options["lr"],
        "optim.optimizer": options["optimizer"],
        "data.workers": options["workers"],
        "data.sources": list(options["data"]) or None,
        "validation.sequences": [str(p) for p in options["val"]] or None,
        **overrides,
    }
    config = load_config(options["config_file"], **settings)
    out = out or Path("runs") / command / default_name
    spec = RunSpec(out=out, config=config, students=students, teacher=teacher, resume=options["resume"], device=options["device"], progress=not options["quiet"], note=click.echo)
    result = run(spec)
    click.echo(f"finished at step {result.step}; weights: " + ", ".join(str(p) for p in result.weights.values()))
    if result.history and any(len(r) > 3 for r in result.history):
        last = result.history[-1]
        click.echo("last validation AUC: " + ", ".join(f"{name} {last[name]['auc']:.3f}" for name in result.weights if name in last))
    click.echo(f"export with: edgetrack export --weights {next(iter(result.weights.values()))} -o MODEL.etb")


@click.command("train")
@click.option("--model", "model", required=True, help="A preset from `edgetrack models`, or a YAML model record (search-student's best.yaml).")
@training_options
@requires("train")
def train_command(model: str, config_file: Path | None, out: Path | None, **options) -> None:
    """Train one model alone on ground truth: a teacher, or a baseline student from scratch.

    \b
    Examples:
      edgetrack train --model nanotrack-v3-s50 --data synthetic:400 --epochs 20
      edgetrack train --model siamfc-alexnet --data got10k:/data/GOT-10k --val ../shared/data/sequences
    """
    from edgetrack.distill.losses import LOSS_PRESETS

    alone = {f"loss.{k}": v for k, v in dataclasses.asdict(LOSS_PRESETS["alone"]).items()}
    options["config_file"] = config_file
    run_training("train", out, Path(model).stem, None, (model,), {**alone, "student_init": "random"}, options)


@click.command("distill")
@click.option("--teacher", required=True, help="NAME:CHECKPOINT, e.g. nanotrack-v3:nanotrackv3.pth, or a model trained by `edgetrack train`.")
@click.option("--students", required=True, help="Comma-separated presets or YAML model records; repeat a name for identical students.")
@click.option("--losses", type=click.Choice(["tsskd", "teacher-student", "alone", "teacher-only"]), default=None, help="Switch loss groups on or off: tsskd = ground truth + teacher-student + student-student; teacher-only = the teacher's soft labels, dense boxes and responses, no ground truth [default: the config's, tsskd].")
@training_options
@requires("train")
def distill_command(teacher: str, students: str, losses: str | None, config_file: Path | None, out: Path | None, **options) -> None:
    """Distil students from a teacher with TSsKD: teacher-student losses and student-student knowledge sharing.

    Students are shrunk from the teacher (its strongest channels) before training. SIGTERM or Ctrl-C saves a
    checkpoint; --resume continues exactly. Runs under torchrun for several GPUs or nodes.

    \b
    Examples:
      edgetrack distill --teacher nanotrack-v3:nanotrackv3.pth --students nanotrack-v3-s50,nanotrack-v3-s50 \\
          --data synthetic:400 --data unlabeled:clip.mp4 --val ../shared/data/sequences
      torchrun --nproc_per_node=4 -m edgetrack.cli distill --teacher ... --students ... --config run.yaml
    """
    from edgetrack.distill.losses import LOSS_PRESETS

    names = tuple(n.strip() for n in students.split(",") if n.strip())
    if not names:
        raise click.BadParameter("give at least one student", param_hint="--students")
    overrides = {f"loss.{k}": v for k, v in dataclasses.asdict(LOSS_PRESETS[losses]).items()} if losses else {}
    options["config_file"] = config_file
    run_training("distill", out, "-".join(dict.fromkeys(Path(n).stem for n in names)), teacher, names, overrides, options)
