"""``edgetrack demo``: the whole pipeline on the synthetic world, with nothing to download, in minutes on a CPU.

The steps, each announced with the time it took:

1. data: evaluation sequences from a world seed that no training pair comes from, and calibration sequences taken
   from the training set, written as OTB folders under ``DIR/data`` so that ``edgetrack eval`` can re-run them;
2. teacher: trained alone from scratch on the synthetic world (or the ``--teacher`` given);
3. students: two students shrunk from the teacher and distilled with TSsKD;
4. baseline: the same student preset trained alone from scratch, for as many steps: what distillation must beat;
5. export: a bundle per model, and int8 (ONNX Runtime) for every student, kept only if it passes the accuracy gate;
6. evaluate: every model and precision on the evaluation sequences;
7. profile: every model and precision, each in its own ``edgetrack profile`` process;
8. report: ``DIR/summary.json`` with every number, and ``DIR/index.html`` (``demo_page``).

Imports go down: this module is the top of the package and uses all three floors.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from edgetrack.cli.common import ClickProgress, echo_note
from edgetrack.defaults import MAX_AUC_DROP
from edgetrack.deploy.build_engine import AccuracyGateError, build_engine
from edgetrack.deploy.export import export_model, load_model
from edgetrack.distill.config import load_config
from edgetrack.distill.data.synthetic import WorldConfig, synthetic_sequence, write_sequence
from edgetrack.distill.losses import LOSS_PRESETS
from edgetrack.distill.models import PRESETS
from edgetrack.distill.trainer import RunSpec, TrainingInterrupted, load_teacher, run
from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.bundle import Bundle, load_bundle
from edgetrack.runtime.datasets import Sequence, load_dataset
from edgetrack.runtime.environment import describe_environment
from edgetrack.runtime.errors import EdgetrackError, InputError, OutputError
from edgetrack.runtime.evaluate import SequenceResult, summarise, track_sequence, write_results
from edgetrack.runtime.files import write_atomic
from edgetrack.runtime.profile_record import ProfileReport
from edgetrack.runtime.tracker import SiameseTracker

from .demo_page import mean_curves, plot_curves, write_clip, write_index

#: Evaluation sequences come from a world seed that neither training (``seed``) nor the trainer's own validation
#: (``seed + 1_000_003``) uses: no evaluation frame was ever trained on.
EVAL_SEED_OFFSET = 2_000_003
#: Marks a folder the demo made, which a later run may clear.
DEMO_MARKER = ".edgetrack-demo"
#: What the demo writes in its folder, and clears at the start of a run.
DEMO_ENTRIES = ("index.html", "summary.json", "curves.png", "clip.gif", "data", "runs", "bundles", "eval", "profiles")
STEPS = ("data", "teacher", "students", "baseline", "export", "evaluate", "profile", "report")


@dataclass(frozen=True)
class TrainingBudget:
    """One training run: ``epochs * steps_per_epoch`` steps of ``batch_size`` pairs."""

    epochs: int
    steps_per_epoch: int
    batch_size: int = 16

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs. The defaults fit ``make demo``, venv creation included, in 10 minutes on 2 CPU cores."""

    #: ``NAME:CKPT`` of a teacher to distil from instead of training one
    teacher: str | None = None
    #: the zoo preset trained as the teacher when none is given; its students are its ``-s50`` preset
    teacher_model: str = "nanotrack-v1"
    teacher_budget: TrainingBudget = TrainingBudget(epochs=3, steps_per_epoch=150)
    #: the distilled students and the baseline get the same budget
    student_budget: TrainingBudget = TrainingBudget(epochs=2, steps_per_epoch=125)
    #: one recipe for every run, so that the runs differ only in their start and their losses. AdamW learns
    #: faster from scratch than the default SGD in budgets this short.
    optimizer: str = "adamw"
    lr: float = 0.002
    #: the trainer's default 100 warm-up steps would be half of a student's run
    warmup_steps: int = 20
    #: synthetic training sequences (seeded by ``seed``)
    train_sequences: int = 200
    eval_sequences: int = 6
    #: frames per evaluation sequence
    eval_length: int = 100
    #: training sequences that int8 calibration follows, and the search crops it records on them
    calib_sequences: int = 2
    calib_frames: int = 100
    #: int8 is kept only if its mean AUC on the evaluation sequences is at most this far below fp32's
    max_auc_drop: float = MAX_AUC_DROP
    #: profiles track one evaluation sequence: these frames first, unrecorded, then the rest
    profile_warmup: int = 10
    #: frames of the annotated clip
    clip_frames: int = 60
    seed: int = 0
    #: the trainer's progress bars
    progress: bool = True


@dataclass(frozen=True)
class DemoData:
    eval_dir: Path
    calib_dir: Path
    eval_sequences: list[Sequence]


@dataclass(frozen=True)
class DemoModel:
    """One model of the comparison. ``key`` names its files: ``bundles/KEY.etb``, ``eval/KEY-PRECISION``..."""

    key: str
    #: what the model is (a zoo preset name, or a student's name in its run)
    name: str
    role: str
    weights: Path
    student: bool


class DemoProgress:
    """One line when a step starts and one when it ends, with its time and the time since the demo began."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, key: str, title: str) -> Iterator[None]:
        click.echo(f"[{STEPS.index(key) + 1}/{len(STEPS)}] {title}", err=True)
        start = time.perf_counter()
        yield
        self.seconds[key] = round(time.perf_counter() - start, 1)
        click.echo(f"      {key}: {self.seconds[key]:.0f} s ({_clock(time.perf_counter() - self.began)} so far)", err=True)

    def total(self) -> float:
        return round(time.perf_counter() - self.began, 1)


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


# ------------------------------------------------------------------------------------------------------- setup


def prepare_out(out: Path) -> Path:
    """Make ``out`` ready before any work: writable, and either empty or a previous demo's folder, whose files go.
    A folder the demo did not make is refused: its ``data`` or ``runs`` could be someone's own."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=out, prefix=".write-test.").close()
    except OSError as exc:
        raise OutputError(f"cannot write the demo to {out}: {exc.strerror or exc}; choose another --out") from None
    if not (out / DEMO_MARKER).exists():
        if any(out.iterdir()):
            raise OutputError(f"--out {out} holds files the demo did not write: give a new or empty folder")
        (out / DEMO_MARKER).write_text("a folder written by edgetrack demo, which replaces its files on the next run\n")
    for name in DEMO_ENTRIES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return out


def student_preset(teacher: str) -> str:
    """The zoo student of a teacher preset: its half-width ``-s50`` one where it has several."""
    students = [name for name, config in PRESETS.items() if config.teacher == teacher]
    if not students:
        raise InputError(f"{teacher} has no student in the zoo: give a teacher that `edgetrack models` lists with students")
    return f"{teacher}-s50" if f"{teacher}-s50" in students else students[0]


# -------------------------------------------------------------------------------------------------------- steps


def write_data(out: Path, settings: DemoSettings) -> DemoData:
    """The evaluation and calibration sequences, as OTB folders under ``out/data``."""
    eval_dir, calib_dir = out / "data" / "eval", out / "data" / "calib"
    world = WorldConfig(length=settings.eval_length)
    for index in range(settings.eval_sequences):
        sequence = synthetic_sequence(settings.seed + EVAL_SEED_OFFSET, index, world)
        write_sequence(sequence, eval_dir / sequence.name)
    for index in range(settings.calib_sequences):
        # Sequences of the training set: int8 ranges are measured on what the models learnt from, never on what
        # they are scored on.
        sequence = synthetic_sequence(settings.seed, index)
        write_sequence(sequence, calib_dir / sequence.name)
    return DemoData(eval_dir, calib_dir, load_dataset(eval_dir).sequences)


def train(folder: Path, settings: DemoSettings, budget: TrainingBudget, students: tuple[str, ...], teacher: str | None, losses: str, init: str) -> dict[str, Path]:
    """One run of the trainer on the synthetic world; the weights file of each student, by name."""
    loss = {f"loss.{k}": v for k, v in dataclasses.asdict(LOSS_PRESETS[losses]).items()}
    config = load_config(
        None,
        epochs=budget.epochs,
        steps_per_epoch=budget.steps_per_epoch,
        batch_size=budget.batch_size,
        seed=settings.seed,
        student_init=init,
        **{
            "data.sources": [f"synthetic:{settings.train_sequences}"],
            # Pairs are made in this process: a loader process takes seconds to start and then competes with
            # training for the same two cores (0.39 against 0.49 s a step measured here).
            "data.workers": 0,
            # Scoring is the evaluation step's job, on sequences of its own.
            "validation.every": 0,
            "optim.optimizer": settings.optimizer,
            "optim.lr": settings.lr,
            "optim.warmup_steps": settings.warmup_steps,
            **loss,
        },
    )
    try:
        return run(RunSpec(out=folder, config=config, students=students, teacher=teacher, progress=settings.progress)).weights
    except TrainingInterrupted as exc:
        # The trainer's advice (--resume) is for its own command: the demo starts over.
        raise TrainingInterrupted(f"the demo was stopped while training in {folder}; run it again to start over", exc.exit_code) from None


def train_teacher(out: Path, settings: DemoSettings) -> DemoModel:
    name = settings.teacher_model
    weights = train(out / "runs" / "teacher", settings, settings.teacher_budget, (name,), None, "alone", "random")[name]
    role = f"teacher (trained alone, {settings.teacher_budget.steps} steps)"
    return DemoModel("teacher", name, role, weights, student=False)


def distill_students(out: Path, settings: DemoSettings, teacher: DemoModel, student: str) -> list[DemoModel]:
    spec = settings.teacher or f"{teacher.name}:{teacher.weights}"
    weights = train(out / "runs" / "students", settings, settings.student_budget, (student, student), spec, "tsskd", "shrink")
    steps = settings.student_budget.steps
    return [
        DemoModel(f"student-{i}", name, f"student {i} (TSsKD, {steps} steps)", path, student=True)
        for i, (name, path) in enumerate(weights.items(), start=1)
    ]


def train_baseline(out: Path, settings: DemoSettings, student: str) -> DemoModel:
    weights = train(out / "runs" / "alone", settings, settings.student_budget, (student,), None, "alone", "random")[student]
    role = f"baseline (trained alone, {settings.student_budget.steps} steps)"
    return DemoModel("alone", student, role, weights, student=True)


def given_teacher(spec: str) -> DemoModel:
    """The ``--teacher NAME:CKPT`` to distil from, loaded once to check it before any work starts."""
    teacher = load_teacher(spec)
    weights = Path(spec.partition(":")[2])
    return DemoModel("teacher", teacher.config.name, f"teacher (given: {weights.name})", weights, student=False)


@dataclass(frozen=True)
class Exported:
    bundles: dict[str, Bundle]
    #: parameters of each model, counted in torch as `edgetrack models` counts them
    params: dict[str, int]
    #: int8 builds the accuracy gate refused, with what it measured on them
    refused: dict[str, AccuracyGateError]


def export_bundles(out: Path, models: list[DemoModel], data: DemoData, settings: DemoSettings) -> Exported:
    """A bundle per model, and int8 for every student. An int8 build that the accuracy gate refuses stays out of
    its bundle; what the gate measured on it is kept for the table."""
    bundles, params, refused = {}, {}, {}
    for model in models:
        network = load_model(model.name, model.weights)
        params[model.key] = sum(p.numel() for p in network.parameters())
        bundle = export_model(network, out / "bundles" / f"{model.key}.etb", parity_data=data.calib_dir, weights=model.weights)
        click.echo(f"      exported {bundle.path}", err=True)
        if model.student:
            try:
                build_engine(
                    bundle.path,
                    "int8",
                    backend="onnxruntime",
                    calib=[data.calib_dir],
                    calib_frames=settings.calib_frames,
                    eval_sources=[data.eval_dir],
                    max_auc_drop=settings.max_auc_drop,
                    note=echo_note,
                    progress=ClickProgress(),
                )
            except AccuracyGateError as exc:
                click.echo(f"      {model.key} int8 refused: {exc}", err=True)
                refused[model.key] = exc
            bundle = load_bundle(bundle.path)
        bundles[model.key] = bundle
    return Exported(bundles, params, refused)


@dataclass(frozen=True)
class Measured:
    """One model at one precision: its tracking results on the evaluation sequences, and its row of the table."""

    results: list[SequenceResult]
    row: dict


def table_row(model: DemoModel, params: int, precision: str, status: str, size_bytes: int, results: list[SequenceResult], note: str = "") -> dict:
    mean = summarise(results).mean
    return {
        "key": model.key,
        "model": model.name,
        "role": model.role,
        "params": params,
        "precision": precision,
        "status": status,
        "size_mb": size_bytes / 1e6,
        "auc": mean.auc,
        "precision_20px": mean.precision,
        "fps": mean.fps,
        "auc_per_sequence": {r.name: r.scores.auc for r in results},
        "p50_ms": None,
        "rss_mb": None,
        "note": note,
    }


def evaluate(out: Path, models: list[DemoModel], exported: Exported, data: DemoData) -> list[Measured]:
    """Track the evaluation sequences with every model and precision (ONNX Runtime). Results also go to
    ``out/eval/KEY-PRECISION`` as ``edgetrack eval`` writes them."""
    measured = []
    bundles = exported.bundles
    total = len(data.eval_sequences) * sum(len(bundles[m.key].meta.models) for m in models)
    with click.progressbar(length=total, label="      evaluate", file=sys.stderr) as bar:
        for model in models:
            bundle, params = bundles[model.key], exported.params[model.key]
            for precision in bundle.meta.models:
                results = []
                with SiameseTracker(bundle.meta, open_backend(bundle, precision, backend="onnxruntime"), bundle=bundle) as tracker:
                    for sequence in data.eval_sequences:
                        results.append(track_sequence(tracker, sequence))
                        bar.update(1)
                write_results(out / "eval" / f"{model.key}-{precision}", results, bundle.meta.name, precision, "onnxruntime")
                size = sum(p.stat().st_size for p in bundle.model_paths(precision))
                measured.append(Measured(results, table_row(model, params, precision, "ok", size, results)))
            gate = exported.refused.get(model.key)
            if gate is not None:
                r = gate.record
                note = f"refused by the accuracy gate: AUC {r.auc:.3f} against fp32's {r.fp32_auc:.3f}, a drop of {r.drop:.3f} > {r.max_auc_drop}"
                measured.append(Measured(gate.results, table_row(model, params, "int8", "refused", gate.model_bytes, gate.results, note)))
    return measured


def profile(out: Path, bundles: dict[str, Bundle], measured: list[Measured], data: DemoData, settings: DemoSettings) -> None:
    """Fill in each kept row's latency and memory from ``edgetrack profile`` on the first evaluation sequence. It
    runs in a process of its own: in this one, torch and the training would weigh on every model's memory."""
    source = data.eval_dir / data.eval_sequences[0].name
    for row in (m.row for m in measured if m.row["status"] == "ok"):
        report_dir = out / "profiles" / f"{row['key']}-{row['precision']}"
        command = [
            sys.executable, "-m", "edgetrack.cli", "profile", str(bundles[row["key"]].path), "--precision", row["precision"],
            "--backend", "onnxruntime", "--source", str(source), "--warmup", str(settings.profile_warmup), "--report", str(report_dir),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise EdgetrackError(f"profiling {row['key']} {row['precision']} failed: {reason}")
        report = ProfileReport.from_json(json.loads((report_dir / "report.json").read_text()))
        row["p50_ms"] = report.latency_ms["update"].p50
        row["rss_mb"] = report.memory.rss_peak_mb
        row["profile"] = str(report_dir.relative_to(out) / "report.html")
        click.echo(f"      {row['key']} {row['precision']}: update p50 {row['p50_ms']:.2f} ms, peak RSS {row['rss_mb']:.0f} MiB", err=True)


def compare(rows: list[dict], sequences: int) -> dict:
    """Whether the distilled students beat the same student trained alone, on fp32 mean AUC: the numbers, the
    standard error of each difference (paired by sequence), and one sentence that says it either way."""
    fp32 = {r["key"]: r for r in rows if r["precision"] == "fp32"}
    alone = fp32["alone"]
    students = {key: row for key, row in fp32.items() if key.startswith("student-")}
    beats = {key: row["auc"] > alone["auc"] for key, row in students.items()}
    errors = {key: paired_standard_error(row["auc_per_sequence"], alone["auc_per_sequence"]) for key, row in students.items()}
    count = sum(beats.values())
    if count == len(beats):
        verdict = "The distilled students beat the same student trained alone"
    elif count == 0:
        verdict = "The distilled students do not beat the same student trained alone"
    else:
        verdict = f"{count} of the {len(beats)} distilled students beat the same student trained alone"
    numbers = ", ".join(
        f"{key} AUC {row['auc']:.3f} ({row['auc'] - alone['auc']:+.3f}" + (f" ± {errors[key]:.3f})" if errors[key] is not None else ")")
        for key, row in students.items()
    )
    spread = "; ± is the standard error of the per-sequence differences" if any(e is not None for e in errors.values()) else ""
    return {
        "alone_auc": alone["auc"],
        "student_auc": {key: row["auc"] for key, row in students.items()},
        "difference_standard_error": errors,
        "beats": beats,
        "all_beat": count == len(beats),
        "sentence": f"{verdict}: {numbers}, against {alone['auc']:.3f} trained alone (fp32, mean over {sequences} evaluation sequences{spread}).",
    }


def paired_standard_error(aucs: dict[str, float], reference: dict[str, float]) -> float | None:
    """The standard error of the mean of per-sequence AUC differences; None with fewer than two sequences."""
    differences = np.array([aucs[name] - reference[name] for name in reference])
    return float(differences.std(ddof=1) / np.sqrt(len(differences))) if len(differences) > 1 else None


# ---------------------------------------------------------------------------------------------------------- run


def run_demo(out: Path, settings: DemoSettings = DemoSettings()) -> dict:
    """Run every step into ``out`` and return the summary. ``summary.json`` and ``index.html`` are written last,
    each whole or not at all, so a failed step leaves neither."""
    given = given_teacher(settings.teacher) if settings.teacher else None
    out = prepare_out(out)
    student = student_preset(given.name if given else settings.teacher_model)
    progress = DemoProgress()

    with progress.step("data", f"writing {settings.eval_sequences} evaluation and {settings.calib_sequences} calibration sequences of the synthetic world"):
        data = write_data(out, settings)
    if given:
        with progress.step("teacher", f"using the given teacher {settings.teacher}"):
            teacher = given
    else:
        b = settings.teacher_budget
        with progress.step("teacher", f"training the teacher {settings.teacher_model} alone from scratch: {b.steps} steps of {b.batch_size} pairs"):
            teacher = train_teacher(out, settings)
    b = settings.student_budget
    with progress.step("students", f"distilling two {student} students from the teacher with TSsKD: {b.steps} steps of {b.batch_size} pairs"):
        students = distill_students(out, settings, teacher, student)
    with progress.step("baseline", f"training {student} alone from scratch, the baseline: {b.steps} steps of {b.batch_size} pairs"):
        baseline = train_baseline(out, settings, student)
    models = [teacher, *students, baseline]
    with progress.step("export", "exporting every model to a bundle, and int8 for the students (calibrated, then gated)"):
        exported = export_bundles(out, models, data, settings)
    with progress.step("evaluate", f"tracking the {len(data.eval_sequences)} evaluation sequences with every model and precision"):
        measured = evaluate(out, models, exported, data)
    with progress.step("profile", "profiling every model and precision with edgetrack profile"):
        profile(out, exported.bundles, measured, data, settings)
    with progress.step("report", "drawing the curves and the annotated clip"):
        rows = [m.row for m in measured]
        kept = [m for m in measured if m.row["status"] == "ok"]
        curves = {f"{m.row['key']} {m.row['precision']}": mean_curves(m.results, data.eval_sequences) for m in kept}
        plot_curves(curves, out / "curves.png")
        best = max((r for r in rows if r["status"] == "ok" and r["key"].startswith("student-")), key=lambda r: r["auc"])
        clip_sequence = data.eval_sequences[0]
        write_clip(exported.bundles[best["key"]], best["precision"], clip_sequence, settings.clip_frames, out / "clip.gif")
    summary = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": dataclasses.asdict(settings),
        "teacher": {"model": teacher.name, "source": settings.teacher or "trained here", "weights": str(teacher.weights)},
        "student": student,
        "data": {
            "train": f"synthetic:{settings.train_sequences}, seed {settings.seed}",
            "eval": str(data.eval_dir.relative_to(out)),
            "eval_sequences": [s.name for s in data.eval_sequences],
            "calib": str(data.calib_dir.relative_to(out)),
        },
        "table": rows,
        "comparison": compare(rows, len(data.eval_sequences)),
        "curves": curves,
        "clip": {"key": best["key"], "model": best["model"], "precision": best["precision"], "sequence": clip_sequence.name, "frames": min(settings.clip_frames, len(clip_sequence))},
        "environment": describe_environment("onnxruntime", None),
        "timings_s": {**progress.seconds, "total": progress.total()},
        "files": {"index": "index.html", "curves": "curves.png", "clip": "clip.gif", "bundles": "bundles", "eval": "eval", "profiles": "profiles", "runs": "runs"},
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_index(out, summary)
    return summary
