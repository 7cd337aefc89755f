"""The ``edgetrack`` command line: one verb per job.

Stages are imported inside each command, so ``edgetrack track`` and ``edgetrack eval`` load only the runtime
floor (no torch), and ``edgetrack --help`` loads nothing heavy at all.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from pathlib import Path

import click

from edgetrack import __version__

PRECISIONS = ("fp32", "fp16", "int8")

# FFmpeg and OpenCV print their own diagnostics to stderr (e.g. "moov atom not found" before our one-line
# error); keep stderr for edgetrack's messages unless the user asks for theirs.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


class EdgetrackGroup(click.Group):
    """Turns every error into one line on stderr and a non-zero exit code instead of a traceback; with
    EDGETRACK_DEBUG=1 the whole chain of exceptions behind the line is printed first.

    An error that carries an ``exit_code`` (a run stopped by SIGTERM: 143, by Ctrl-C: 130) exits with it.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if os.environ.get("EDGETRACK_DEBUG", "") not in ("", "0"):
                print_chain(exc)
            click.echo(f"error: {describe_error(exc)}", err=True)
            ctx.exit(getattr(exc, "exit_code", 130 if isinstance(exc, KeyboardInterrupt) else 1))


def print_chain(exc: BaseException) -> None:
    """The traceback of ``exc`` with every exception behind it, including those a ``raise ... from None`` hid."""
    import traceback

    seen = exc
    while seen is not None:
        seen.__suppress_context__ = False
        seen = seen.__cause__ or seen.__context__
    traceback.print_exception(exc, file=sys.stderr)


def describe_error(exc: BaseException) -> str:
    """One line for the user: the project's own message, or what the system said and what to do about it."""
    import errno

    from edgetrack.runtime.errors import EdgetrackError

    if isinstance(exc, EdgetrackError):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        hint = {
            errno.ENOSPC: "free some space or write somewhere else",
            errno.EDQUOT: "free some space or write somewhere else",
            errno.EROFS: "write somewhere else",
            errno.EACCES: "check the permissions or write somewhere else",
            errno.EPERM: "check the permissions or write somewhere else",
        }.get(exc.errno, "check the path")
        return f"{exc.strerror or exc}{where}; {hint}"
    if isinstance(exc, MemoryError):
        return "out of memory; use smaller inputs or settings"
    if isinstance(exc, KeyboardInterrupt):
        return " ".join(str(exc).split()) or "interrupted"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"unexpected {type(exc).__name__}: {first}; rerun with EDGETRACK_DEBUG=1 for the traceback, and please report it"


@click.group(cls=EdgetrackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgetrack")
def main() -> None:
    """Distil Siamese trackers and run them on the edge.

    \b
    Quick start:
      edgetrack import-nanotrack backbone.onnx head.onnx -o nanotrack-v2.etb
      edgetrack eval nanotrack-v2.etb --dataset ../shared/data/sequences
      edgetrack track nanotrack-v2.etb --source video.mp4 --init 100,80,40,60 --save out.mp4
    """


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets nan and inf through: they fail no comparison."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number.", ctx=ctx, param=param)
    return value


def backend_options(command):
    """The options every command that runs a bundle shares."""
    command = click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for ONNX Runtime (default: its own choice).")(command)
    command = click.option("--device", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True, help="ONNX Runtime execution provider.")(command)
    command = click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt", "opencv"]), default="auto", show_default=True, help="auto: TensorRT engines when built for this machine, else ONNX Runtime. opencv: OpenCV DNN, slower but ~50 MiB leaner.")(command)
    command = click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True, help="Which of the bundle's models to run.")(command)
    return command


def open_tracker(bundle_path: Path, precision: str, backend: str, device: str, threads: int | None, clock=None):
    from edgetrack.runtime.backends import open_backend
    from edgetrack.runtime.bundle import load_bundle
    from edgetrack.runtime.tracker import SiameseTracker

    from edgetrack.runtime.pretrained import resolve

    bundle = load_bundle(resolve(bundle_path))
    runner = open_backend(bundle, precision, backend=backend, device=device, threads=threads)
    return bundle, SiameseTracker(bundle.meta, runner, clock=clock)


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def models_command(as_json: bool) -> None:
    """List the model zoo and the students shipped with edgetrack: size, GFLOPs per branch and default tracking
    hyper-parameters of each, and where a shipped student's model card is.

    \b
    Example:
      edgetrack models
      edgetrack models --json > models.json
    """
    import dataclasses
    import json

    try:
        from edgetrack.distill.models import PRESETS
        from edgetrack.distill.models.summary import summarise
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise click.ClickException("the model zoo needs torch: pip install 'edgetrack[train]'") from None
    from edgetrack.runtime.pretrained import describe, shipped

    rows = [summarise(config) for config in PRESETS.values()]
    students = [describe(name) for name in shipped()]
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in [*rows, *students]], indent=2))
        return
    click.echo(f"{'model':<22}{'family':<11}{'teacher':<16}{'params':>10}{'fp32 MB':>9}{'GFLOPs z':>10}{'GFLOPs x':>10}  window/penalty/lr")
    for r in [*rows, *students]:
        h = r.hyper
        click.echo(
            f"{r.name:<22}{r.family:<11}{r.teacher or '-':<16}{r.params / 1e6:>9.3f}M{r.fp32_mb:>9.2f}"
            f"{r.template_gflops:>10.3f}{r.search_gflops:>10.3f}  "
            f"{h['window_influence']:.3f}/{h['penalty_k']:.3f}/{h['lr']:.3f}"
        )
    for student in students:
        click.echo(f"{student.name} is shipped with edgetrack: use its name as a bundle; model card: {student.card}")


def default_parity_data() -> Path | None:
    """The shared sequences when this machine has them; otherwise export checks parity on random crops."""
    folder = Path(os.environ.get("EDGETRACK_DATA", "../shared/data")) / "sequences"
    return folder if folder.is_dir() else None


@main.command("export")
@click.option("--model", "name", default=None, help="A preset name from `edgetrack models`; optional for weights written by train/distill, which record their model (it then picks one student of a run's last.pt).")
@click.option("--weights", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None, help="Checkpoint to load (a state_dict, or {'state_dict': ...}, or a file written by train/distill); strict.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to write (NAME.etb).")
@click.option("--opset", type=click.IntRange(11, 21), default=17, show_default=True, help="ONNX opset.")
@click.option("--parity-data", type=click.Path(path_type=Path, exists=True), default=None, help="Annotated sequences for the torch/ONNX parity crops [default: $EDGETRACK_DATA/sequences when present, else random crops].")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
def export_command(name: str | None, weights: Path | None, out: Path, opset: int, parity_data: Path | None, force: bool) -> None:
    """Export a zoo model to a bundle: template.onnx + search.onnx, simplified with onnxslim, checked with
    onnx.checker, and refused unless ONNX Runtime reproduces torch on real crops.

    \b
    Example:
      edgetrack export --model nanotrack-v2 --weights nanotrackv2.pth -o nanotrack-v2.etb
      edgetrack export --weights runs/distill/nanotrack-v3-s50/nanotrack-v3-s50.pt -o student.etb
    """
    try:
        from edgetrack.deploy.export import export_model, load_model
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"export needs the train and deploy extras ({exc.name} is missing): pip install 'edgetrack[train,deploy]'") from None
    model = load_model(name, weights)
    bundle = export_model(model, out, opset=opset, parity_data=parity_data or default_parity_data(), force=force, weights=weights)
    p = bundle.meta.parity
    click.echo(f"wrote {bundle.path}: {bundle.meta.name}, parity {p['max_abs_diff']:.1e} abs / {p['max_rel_diff']:.1e} rel on {p['inputs']}")


def training_options(command):
    """The options ``train`` and ``distill`` share; each overrides the same setting of ``--config``."""
    options = [
        click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None, help="YAML settings (see distill/config.py for every field); options below override it."),
        click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder: checkpoints, log.csv, tensorboard/, history.json [default: runs/COMMAND/NAME]."),
        click.option("--data", "data", multiple=True, help="Training data, repeatable: synthetic[:N], unlabeled:VIDEO|DIR, sequences:DIR (OTB/VOT folders), got10k:PATH, lasot:PATH, trackingnet:PATH, vid:PATH, coco:JSON; append @WEIGHT for its share [default: synthetic]."),
        click.option("--val", "val", multiple=True, type=click.Path(path_type=Path, exists=True), help="Validation sequences, repeatable (folders or videos with ground truth) [default: synthetic sequences]."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs [default: 10]."),
        click.option("--steps", "steps", type=click.IntRange(min=1), default=None, help="Steps per epoch [default: 200]."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Pairs per step and per process [default: 16]."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Peak learning rate [default: 0.01]."),
        click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None, help="Optimiser [default: sgd]."),
        click.option("--workers", type=click.IntRange(min=0), default=None, help="Processes that make pairs besides training [default: 0: the training process makes them, the fastest on a 2-core CPU]."),
        click.option("--seed", type=int, default=None, help="Seed of the pairs and the initialisation [default: 0]."),
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
    try:
        from edgetrack.distill.config import load_config
        from edgetrack.distill.trainer import RunSpec, run
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"{command} needs the train extra ({exc.name} is missing): pip install 'edgetrack[train]'") from None
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
    spec = RunSpec(out=out, config=config, students=students, teacher=teacher, resume=options["resume"], device=options["device"], progress=not options["quiet"])
    result = run(spec)
    click.echo(f"finished at step {result.step}; weights: " + ", ".join(str(p) for p in result.weights.values()))
    if result.history and any(len(r) > 3 for r in result.history):
        last = result.history[-1]
        click.echo("last validation AUC: " + ", ".join(f"{name} {last[name]['auc']:.3f}" for name in result.weights if name in last))
    click.echo(f"export with: edgetrack export --weights {next(iter(result.weights.values()))} -o MODEL.etb")


@main.command("train")
@click.option("--model", "model", required=True, help="A preset from `edgetrack models`, or a YAML model record (search-student's best.yaml).")
@training_options
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


@main.command("distill")
@click.option("--teacher", required=True, help="NAME:CHECKPOINT, e.g. nanotrack-v3:nanotrackv3.pth, or a model trained by `edgetrack train`.")
@click.option("--students", required=True, help="Comma-separated presets or YAML model records; repeat a name for identical students.")
@click.option("--losses", type=click.Choice(["tsskd", "teacher-student", "alone"]), default=None, help="Switch loss groups on or off: tsskd = ground truth + teacher-student + student-student [default: the config's, tsskd].")
@training_options
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


@main.command("search-student")
@click.option("--teacher", required=True, help="NAME:CHECKPOINT of the teacher to shrink, e.g. nanotrack-v3:nanotrackv3.pth.")
@click.option("--target-compression", type=click.FloatRange(min=1, min_open=True), callback=finite, default=8.0, show_default=True, help="Teacher parameters / student parameters wanted.")
@click.option("--tolerance", type=click.FloatRange(min=0), callback=finite, default=0.1, show_default=True, help="Relative miss of the target that costs no reward.")
@click.option("--episodes", type=click.IntRange(min=1), default=12, show_default=True, help="Policy updates.")
@click.option("--students-per-episode", type=click.IntRange(min=1), default=4, show_default=True, help="Students sampled and scored per episode.")
@click.option("--proxy-steps", type=click.IntRange(min=1), default=40, show_default=True, help="Distillation steps that score each student (teacher-student losses).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Pairs per proxy step.")
@click.option("--data", "data", multiple=True, help="Training data of the proxy distillation, as for distill --data [default: synthetic].")
@click.option("--val", "val", multiple=True, type=click.Path(path_type=Path, exists=True), help="Held-apart validation sequences that score the students [default: synthetic sequences no training pair comes from].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the policy's samples and of the proxy pairs.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the search in --out from its last episode.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Search folder: best.yaml, log.csv, search.html, search.pt.")
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
    try:
        from edgetrack.distill.search.loop import SearchConfig
        from edgetrack.distill.search.proxy import ProxySettings
        from edgetrack.distill.search.reward import RewardConfig
        from edgetrack.distill.search.student_search import StudentSearch, search_student
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"search-student needs the train and report extras ({exc.name} is missing): pip install 'edgetrack[train,report]'") from None
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
        f"best student: {best['params']:,} parameters, {best['compression']:.2f}x smaller, validation AUC {best['auc']:.3f} "
        f"(teacher {outcome.teacher_auc:.3f}), reward {best['reward']:.3f}"
    )
    click.echo(f"wrote {outcome.best_yaml} and {outcome.report}")
    click.echo(f"distill it with: edgetrack distill --teacher {teacher} --students {outcome.best_yaml}")


@main.command("import-nanotrack")
@click.argument("backbone", type=click.Path(path_type=Path))
@click.argument("head", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to write (NAME.etb).")
@click.option("--version", "version", type=click.Choice(["v1", "v2", "v3"]), default=None, help="NanoTrack version; detected from the files when omitted.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
def import_nanotrack_command(backbone: Path, head: Path, out: Path, version: str | None, force: bool) -> None:
    """Turn a published NanoTrack backbone/head ONNX pair into a bundle.

    \b
    Example:
      edgetrack import-nanotrack nanotrack_backbone_sim.onnx nanotrack_head_sim.onnx --version v2 -o nanotrack-v2.etb
    """
    try:
        from edgetrack.deploy.import_nanotrack import import_nanotrack
    except ImportError as exc:
        raise click.ClickException(
            f"import-nanotrack needs the deploy extra ({exc.name} is missing): pip install 'edgetrack[deploy]'"
        ) from None
    bundle = import_nanotrack(backbone, head, out, version=version, force=force)
    meta = bundle.meta
    click.echo(
        f"wrote {bundle.path}: {meta.name}, score map {meta.geometry.score_size}x{meta.geometry.score_size}, "
        f"fused-model parity {meta.parity['max_abs_diff']:.1e}"
    )


@main.command("build-engine")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--precision", type=click.Choice(PRECISIONS), required=True, help="The precision to build.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True, help="auto: TensorRT when it imports and a CUDA GPU exists, else ONNX Runtime.")
@click.option("--calib", "calib", multiple=True, type=click.Path(path_type=Path), help="Annotated sequence folder, folder of sequences or video with ground truth for int8 calibration; repeatable.")
@click.option("--calib-frames", type=click.IntRange(min=1), default=200, show_default=True, help="Search crops to calibrate on, spread over the --calib sequences.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default=None, help="ONNX Runtime's calibration method [default: minmax]; TensorRT always uses its entropy calibrator.")
@click.option("--workspace", "workspace_mib", type=click.IntRange(min=1), default=1024, show_default=True, help="TensorRT builder workspace pool limit, MiB.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None, help="TensorRT timing cache file, reused and updated across builds.")
@click.option("--max-auc-drop", type=float, default=0.02, show_default=True, help="Fail the build when the mean AUC falls more than this below fp32's.")
@click.option("--eval", "eval_sources", multiple=True, type=click.Path(path_type=Path), help="Annotated sequences for the accuracy gate; repeatable [default: the --calib sources].")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None, help="For a shipped student: the copy to build into [default: ./NAME.etb]; the installed one is never changed.")
def build_engine_command(bundle: Path, precision: str, backend: str, calib: tuple[Path, ...], calib_frames: int, calib_method: str | None, workspace_mib: int, timing_cache: Path | None, max_auc_drop: float, eval_sources: tuple[Path, ...], out: Path | None) -> None:
    """Build fp16 or int8 models (ONNX Runtime) or engines (TensorRT) for a bundle, kept only if they track
    within --max-auc-drop of fp32 on the --eval sequences; otherwise the bundle is left as it was.

    \b
    Example:
      edgetrack build-engine nanotrack-v2.etb --precision int8 --calib ../shared/data/sequences
      edgetrack build-engine edgetrack-nano-m --precision int8 --calib ../shared/data/train -o nano-m.etb
      edgetrack build-engine nanotrack-v2.etb --precision fp16 --eval ../shared/data/sequences/bag
      edgetrack eval nanotrack-v2.etb --precision int8 --dataset ../shared/data/sequences
    """
    try:
        from edgetrack.deploy.build_engine import build_engine
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"build-engine needs the deploy extra ({exc.name} is missing): pip install 'edgetrack[deploy]'") from None
    from edgetrack.runtime.pretrained import writable_copy

    report = build_engine(
        writable_copy(bundle, out),
        precision,
        backend=backend,
        calib=list(calib),
        calib_frames=calib_frames,
        calib_method=calib_method,
        workspace_mib=workspace_mib,
        timing_cache=timing_cache,
        max_auc_drop=max_auc_drop,
        eval_sources=list(eval_sources),
    )
    if report.accuracy is None:
        click.echo(report.note)
        return
    a = report.accuracy
    click.echo(f"built {precision} for {report.backend} in {report.bundle}: {', '.join(p.name for p in report.files)}")
    click.echo(
        f"accuracy gate passed: mean AUC {a['auc']:.3f} vs fp32 {a['fp32_auc']:.3f} (drop {a['drop']:+.3f} <= {max_auc_drop}) "
        f"on {len(a['sequences'])} sequence(s)"
    )


@main.command("eval")
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
    from edgetrack.runtime.evaluate import EVAL_TOOL, previous_results, result_names, track_sequence, write_results
    from edgetrack.runtime.metrics import LostScores
    from edgetrack.runtime.output_folder import claim_output

    data = load_dataset(dataset, groundtruth)
    for name, reason in data.skipped:
        click.echo(f"skipping {name}: {reason}", err=True)
    loaded, tracker = open_tracker(bundle, precision, backend, device, threads)
    folder = claim_output(out or Path("runs") / "eval" / bundle.stem, EVAL_TOOL, "--out", result_names(data.sequences), previous_results)
    with folder:
        results = []
        total = sum(len(s) - 1 for s in data.sequences)
        with click.progressbar(length=total, label=f"eval {loaded.meta.name}", file=sys.stderr) as bar:
            for sequence in data.sequences:
                results.append(track_sequence(tracker, sequence, on_frame=lambda: bar.update(1)))
        mean = write_results(
            folder.path,
            results,
            {"bundle": loaded.meta.name, "precision": precision, "backend": tracker.backend.name},
        )["mean"]
        folder.commit(result_names(results))
    click.echo(f"{'sequence':<24}{'frames':>8}{'AUC':>8}{'P@20':>8}{'nP@0.2':>8}{'fps':>8}{'absent':>8}{'lost@abs':>10}{'lost@pres':>10}")
    for r in results:
        s = r.scores
        click.echo(
            f"{r.name:<24}{r.frames:>8}{s.auc:>8.3f}{s.precision:>8.3f}{s.norm_precision:>8.3f}{r.fps:>8.0f}"
            f"{r.lost.absent_frames:>8}{_share(r.lost.recall):>10}{_share(r.lost.false_alarms):>10}"
        )
    pooled = sum((r.lost for r in results), LostScores(0, 0, 0, 0))
    click.echo(
        f"{'mean':<24}{mean['frames']:>8}{mean['auc']:>8.3f}{mean['precision']:>8.3f}"
        f"{mean['norm_precision']:>8.3f}{mean['fps']:>8.0f}"
        f"{pooled.absent_frames:>8}{_share(pooled.recall):>10}{_share(pooled.false_alarms):>10}"
    )
    click.echo("AUC, P@20 and nP@0.2 leave out frames whose target is absent; lost@abs / lost@pres: share of those / of the others flagged lost")
    click.echo(f"results in {folder.path}")


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


def parse_box(text: str) -> tuple[float, float, float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise click.BadParameter(f"expected x,y,w,h (four numbers), got {text!r}")
    return values


@main.command("profile")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--source", required=True, help="An annotated sequence folder (its first box is the default --init), a video, an image folder, camera:N, csi:N or a stream URL.")
@click.option("--init", "init_box", default=None, help="The target in the first frame: x,y,w,h in pixels [default: the sequence's first ground-truth box].")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Frames to record after the warm-up [default: to the end of the source; 300 from a camera]. In paced mode dropped frames count.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Frames tracked before recording starts.")
@click.option("--mode", type=click.Choice(["offline", "paced"]), default="offline", show_default=True, help="offline: frames back to back. paced: frames arrive at --fps like a camera; late ones are dropped.")
@click.option("--fps", "paced_fps", type=click.FloatRange(min=0, min_open=True), callback=finite, default=30.0, show_default=True, help="Frame rate of paced mode.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), required=True, help="Folder for report.json, report.md, report.html and the PNG plots (replaced if it holds a previous report).")
@backend_options
def profile_command(bundle: Path, source: str, init_box: str | None, frames: int | None, warmup: int, mode: str, paced_fps: float, report_dir: Path, precision: str, backend: str, device: str, threads: int | None) -> None:
    """Profile a bundle on a source: latency per stage (p50/p95/p99), fps, memory, CPU, model cost and
    environment, written as report.json, report.md and a self-contained report.html with plots.

    \b
    Examples:
      edgetrack profile nanotrack-v2.etb --source ../shared/data/sequences/bag --report runs/profile/v2
      edgetrack profile nanotrack-v2.etb --precision int8 --source clip.mp4 --init 292,112,106,144 --mode paced --fps 30 --report runs/profile/v2-int8
      edgetrack profile nanotrack-v2.etb --source camera:0 --init 200,150,80,80 --frames 600 --report runs/profile/camera
    """
    try:
        import matplotlib  # noqa: F401
        import psutil  # noqa: F401
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"profile needs the report extra ({exc.name} is missing): pip install 'edgetrack[report]'") from None
    from edgetrack.runtime.environment import describe_environment
    from edgetrack.runtime.profile import ProfileSettings, open_profile_input, profile_tracker
    from edgetrack.runtime.profile_report import build_report, check_report_dir, write_report
    from edgetrack.runtime.stopwatch import StageClock

    settings = ProfileSettings(frames=frames, warmup=warmup, mode=mode, fps=paced_fps)
    report_dir = check_report_dir(report_dir)
    stream = open_profile_input(source, parse_box(init_box) if init_box else None)
    clock = StageClock()
    loaded, tracker = open_tracker(bundle, precision, backend, device, threads, clock=clock)
    with click.progressbar(length=stream.frames_to_record(settings), label=f"profile {loaded.meta.name} {precision}", file=sys.stderr) as bar:
        run = profile_tracker(tracker, clock, stream, settings, on_frame=lambda: bar.update(1))
    report = build_report(run, loaded, precision, tracker.backend.name, describe_environment(tracker.backend.name, threads))
    write_report(report_dir, report)
    latency = report["latency_ms"]
    click.echo(f"{'stage':<20}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for name, stats in latency.items():
        click.echo(f"{name:<20}{stats['p50']:>9.2f}{stats['p95']:>9.2f}{stats['p99']:>9.2f}{stats['mean']:>9.2f}")
    memory = report["memory"]
    click.echo(
        f"{run.frames} frames ({run.dropped} dropped): tracker {run.tracker_fps:.0f} fps, end-to-end {run.end_to_end_fps:.0f} fps; "
        f"RSS peak {memory['rss_peak_mb']:.0f} MiB (growth {memory['rss_growth_mb']:+.1f}); CPU {report['cpu']['utilisation_percent']:.0f}% of one core"
    )
    click.echo(f"report in {report_dir}/report.html")


@main.command("track")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--source", required=True, help="A video file, a folder of images, camera:N (V4L2), csi:N (Jetson CSI camera) or an rtsp:// or http:// stream.")
@click.option("--init", "init_box", default=None, help="The target in the first frame: x,y,w,h in pixels [default: drag a box in the window].")
@click.option("--results", type=click.Path(path_type=Path), default=None, help="Write one x,y,w,h,score,lost line per frame here.")
@click.option("--save", type=click.Path(path_type=Path), default=None, help="Record the annotated stream (.mp4 or .avi).")
@click.option("--show/--no-show", default=None, help="Show the annotated stream in a window (r: select the target again, q: quit) [default: when a display exists]. --no-show is headless.")
@backend_options
def track_command(bundle: Path, source: str, init_box: str | None, results: Path | None, save: Path | None, show: bool | None, precision: str, backend: str, device: str, threads: int | None) -> None:
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
    """
    from edgetrack.runtime.sources import open_source
    from edgetrack.runtime.track_session import track_stream

    box = parse_box(init_box) if init_box else None
    frames = open_source(source)
    _, tracker = open_tracker(bundle, precision, backend, device, threads)
    summary = track_stream(tracker, frames, box, results=results, save=save, show=show)
    click.echo(summary)
    if summary.exit_code:
        sys.exit(summary.exit_code)


@main.command("bench")
@click.argument("bundle", type=click.Path(path_type=Path), required=False)
@click.option("--model", "model_name", default=None, help="Instead of BUNDLE: a preset from `edgetrack models`, exported into --out first (needs torch).")
@click.option("--weights", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None, help="Checkpoint for --model, as for `edgetrack export`.")
@click.option("--dataset", type=click.Path(path_type=Path), required=True, help="Annotated sequences to track: a sequence folder, a folder of sequences or a video.")
@click.option("--precisions", default="fp32,fp16,int8", show_default=True, help="Comma-separated precisions to bench.")
@click.option("--backends", default="onnxruntime", show_default=True, help="Comma-separated backends: onnxruntime, tensorrt.")
@click.option("--calib", "calib", multiple=True, type=click.Path(path_type=Path), help="Calibration sequences for int8 builds; repeatable [default: --dataset].")
@click.option("--max-auc-drop", type=float, default=0.02, show_default=True, help="Accuracy gate of every build: how far its mean AUC may fall below fp32's.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for ONNX Runtime and the OpenCV reference (default: their own choice).")
@click.option("--compare", default=None, help="opencv-nano: add cv2.TrackerNano as a reference row, on the bundle's published pair found under $EDGETRACK_DATA/models/nanotrack, or on opencv-nano=BACKBONE.onnx,HEAD.onnx.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="Timed passes over --dataset per cell, cells taking turns; FPS is the median.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where bench.json and bench.md go [default: runs/bench/BUNDLE].")
def bench_command(bundle: Path | None, model_name: str | None, weights: Path | None, dataset: Path, precisions: str, backends: str, calib: tuple[Path, ...], max_auc_drop: float, threads: int | None, compare: str | None, rounds: int, out: Path | None) -> None:
    """Bench a bundle over precisions x backends: build what is missing (each build passes the accuracy gate),
    then track --dataset with every cell and report size, AUC, ms/frame and FPS.

    Status: ✅ ok, ❎ built but failed the accuracy gate (not kept), ❌ could not be built or run here, each
    with its one-line reason. The bundle keeps what was built.

    \b
    Example:
      edgetrack bench nanotrack-v2.etb --dataset ../shared/data/sequences --compare opencv-nano
      edgetrack bench --model nanotrack-v3 --weights nanotrackv3.pth --dataset ../shared/data/sequences \\
          --precisions fp32,int8 --backends onnxruntime,tensorrt
    """
    try:
        from edgetrack.deploy.bench import BENCH_TOOL, export_preset, parse_compare, plan_bench, previous_bench, render_text, run_bench, write_report
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"bench needs the deploy extra ({exc.name} is missing): pip install 'edgetrack[deploy]'") from None
    from edgetrack.runtime.bundle import load_bundle
    from edgetrack.runtime.errors import InputError
    from edgetrack.runtime.output_folder import claim_output
    from edgetrack.runtime.pretrained import resolve, writable_copy

    if (bundle is None) == (model_name is None):
        raise InputError("give either a BUNDLE or --model NAME to bench")
    if weights is not None and model_name is None:
        raise InputError("--weights goes with --model; a BUNDLE already holds its weights")
    shipped = bundle is not None and resolve(bundle) != bundle
    if bundle is not None:
        load_bundle(resolve(bundle))
    name = Path(bundle).name.removesuffix(".etb") if bundle else model_name
    writes = ["bench.json", "bench.md"] + ([f"{name}.etb"] if shipped or bundle is None else [])
    folder = claim_output(out or Path("runs") / "bench" / name, BENCH_TOOL, "--out", writes, previous_bench)
    with folder:
        plan = plan_bench(
            dataset,
            folder.path,
            precisions=precisions.split(","),
            backends=backends.split(","),
            calib=calib,
            max_auc_drop=max_auc_drop,
            threads=threads,
            compare=parse_compare(compare) if compare else None,
            rounds=rounds,
        )
        benched = writable_copy(bundle, folder.path / f"{name}.etb") if bundle else export_preset(model_name, weights, plan)
        report = run_bench(benched, plan)
        click.echo(render_text(report))
        written = write_report(report, plan.out)
        folder.commit(writes)
    click.echo(f"wrote {written[0]} and {written[1]}")


@main.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True, help="Folder for index.html, summary.json, bundles, runs, data and reports; a previous demo's files there are replaced.")
@click.option("--teacher", default=None, help="NAME:CKPT of a teacher to distil from instead of training one, e.g. nanotrack-v3:nanotrackv3.pth.")
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
    try:
        import matplotlib  # noqa: F401
        import onnxslim  # noqa: F401
        import psutil  # noqa: F401

        from edgetrack.demo import DemoSettings, run_demo
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"demo needs the train, deploy and report extras ({exc.name} is missing): pip install 'edgetrack[train,deploy,report]'") from None
    summary = run_demo(out, DemoSettings(teacher=teacher))
    click.echo(f"{'model':<22}{'role':<10}{'precision':<11}{'AUC':>7}{'fps':>7}{'p50 ms':>8}{'RSS MiB':>9}")
    for row in summary["table"]:
        numbers = f"{row['auc']:>7.3f}{row['fps']:>7.0f}" + (f"{row['p50_ms']:>8.2f}{row['rss_mb']:>9.0f}" if row["status"] == "ok" else "  refused by the accuracy gate")
        click.echo(f"{row['model']:<22}{row['key']:<10}{row['precision']:<11}{numbers}")
    click.echo(summary["comparison"]["sentence"])
    click.echo(f"finished in {summary['timings_s']['total']:.0f} s; open {out / 'index.html'}")


if __name__ == "__main__":
    main()
