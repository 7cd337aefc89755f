"""Train the students shipped in ``runtime/pretrained/``, score them on the benchmark and write their model cards.

Each student is distilled from its teacher in stages (progressive shrinking): every stage shrinks the previous
stage's student to narrower widths (``shrink_from`` in its model record) and distils it for a fixed number of
steps. Every stage is an ordinary ``edgetrack distill`` run folder under ``--work``: a run that is stopped (SIGTERM,
Ctrl-C, the end of a session) continues exactly where it stopped when this script is started again, and a finished
stage is skipped. So the script can run in the background for as long as it needs, over several sessions:

    nohup .venv/bin/python benchmarks/train_pretrained.py --work runs/pretrained > runs/pretrained.log 2>&1 &

When every stage of a student is done, its last stage is exported to ``WORK/NAME.etb``, scored on
``$EDGETRACK_DATA/benchmark`` beside NanoTrack v2 (``student_benchmark.py``: paired AUC interval, interleaved
fps), and its card is written to ``WORK/NAME.md``. ``--ship`` copies both into ``runtime/pretrained/``. A recipe
with ``tune_trials`` first tunes the exported bundle's tracking hyper-parameters in place with ``edgetrack tune``
on ``$EDGETRACK_DATA/train`` (seeded, one thread, so the values repeat).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from student_benchmark import compare, open_entry, run_benchmark, write_report  # noqa: E402

from edgetrack.deploy.export import export_model, load_model  # noqa: E402
from edgetrack.distill.config import TrainConfig, load_config  # noqa: E402
from edgetrack.distill.losses import LOSS_PRESETS  # noqa: E402
from edgetrack.distill.models import PRESETS  # noqa: E402
from edgetrack.distill.models.base import CHANNEL_MULTIPLE, scaled_width  # noqa: E402
from edgetrack.distill.shrink import aligned_widths, widen  # noqa: E402
from edgetrack.distill.trainer import RunSpec, run  # noqa: E402
from edgetrack.runtime.environment import cpu_model  # noqa: E402
from edgetrack.runtime.bundle import Hyper, load_bundle  # noqa: E402
from edgetrack.runtime.files import write_atomic  # noqa: E402
from edgetrack.runtime.metrics import Interval  # noqa: E402
from edgetrack.runtime.tune import tune  # noqa: E402

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
SHIPPED = Path(__file__).resolve().parents[1] / "runtime" / "pretrained"
VIDEOS = ("oneperson.mp4", "fear_test.mp4", "sam2_01_dog.mp4", "sam2_02_cups.mp4", "sam2_05_default_juggle.mp4", "sam2_bedroom.mp4")


@dataclass(frozen=True)
class Widths:
    """Width factors of NanoTrack v2's groups: the inverted residuals' expansions (and their squeeze-excite),
    the stem and stage outputs, the head towers and the correlation channels. The unused neck keeps 1 channel."""

    expand: float
    stage: float
    tower: float
    corr: float = 1.0

    def of(self, teacher: dict[str, int], aligned: bool) -> dict[str, int]:
        def factor(group: str) -> float:
            if "expand" in group or group.endswith(".se"):
                return self.expand
            if group.startswith(("stage", "stem")):
                return self.stage
            if "tower" in group:
                return self.tower
            return self.corr if group.startswith("corr") else 1.0

        multiple = CHANNEL_MULTIPLE if aligned else 1
        widths = {group: scaled_width(width, factor(group), multiple) for group, width in teacher.items()}
        return {**widths, "neck": 1}


@dataclass(frozen=True)
class Stage:
    """One step of progressive shrinking: the widths the previous stage's student is shrunk to, and how long it
    is distilled there."""

    widths: Widths
    steps: int


@dataclass(frozen=True)
class Recipe:
    name: str
    base: str
    teacher_weights: Path
    #: each stage starts from the previous one shrunk to its widths
    stages: tuple[Stage, ...]
    data: tuple[str, ...]
    losses: str = "teacher-student"
    #: loss weights set on top of the ``losses`` preset, as (LossConfig field, weight)
    loss_weights: tuple[tuple[str, float], ...] = ()
    #: identical students trained together (TSsKD shares knowledge between them); the first one is kept
    students: int = 1
    #: "shrink": from the teacher (then from the previous stage); "random": the first stage starts from scratch
    init: str = "shrink"
    batch_size: int = 16
    lr: float = 0.01
    #: train at widths rounded to multiples of 8 (True), or at the nearest widths and widen the trained student to
    #: multiples of 8 with zero channels before export (False, the first shipped recipe); the exported bundle is
    #: aligned either way
    aligned: bool = False
    #: width groups (fnmatch patterns) the widening before export leaves as trained: the squeeze-excite groups are
    #: fully connected layers, outside the convolution kernels alignment is for
    keep_widths: tuple[str, ...] = ()
    #: trials of ``edgetrack tune`` on ``$EDGETRACK_DATA/train`` after export; 0 keeps NanoTrack v2's values
    tune_trials: int = 0
    #: BatchNorm while training (``TrainConfig.batchnorm``): ``batch`` statistics, or ``frozen`` running ones
    batchnorm: str = "batch"
    seed: int = 0

    @property
    def teacher(self) -> str:
        return f"{self.base}:{self.teacher_weights}"

    @property
    def steps(self) -> int:
        return sum(stage.steps for stage in self.stages)


def default_data() -> tuple[str, ...]:
    """Real labelled sequences (train/, never the benchmark), the teacher-labelled videos and the synthetic world."""
    return (f"sequences:{DATA / 'train'}@3", *(f"unlabeled:{DATA / 'videos' / v}@0.5" for v in VIDEOS), "synthetic@1")


def recipes() -> dict[str, Recipe]:
    v2 = DATA / "models" / "nanotrack" / "v2" / "nanotrackv2.pth"
    return {
        "edgetrack-nano-m": Recipe(
            "edgetrack-nano-m",
            "nanotrack-v2",
            v2,
            (Stage(Widths(0.9, 0.9, 0.75), 1000), Stage(Widths(0.8, 0.8, 0.6), 1000), Stage(Widths(0.75, 0.75, 0.5), 3000)),
            default_data(),
            # +0.062 [+0.019, +0.125] AUC over the teacher-student losses with batch statistics on the benchmark
            # (recipe_ablation.py's teacher-only-frozen-bn arm against its shipped arm)
            losses="teacher-only",
            batchnorm="frozen",
            # without it seed 1 collapsed at stage 3 (0.259; recipe_ablation.py's teacher-only-frozen-bn-log arms)
            loss_weights=(("dense_box_log", 1.0),),
            # untuned: tuning on train/'s five sequences moved nano-m's benchmark AUC by +0.009, -0.013 and -0.090
            # for three nano-m recipes (benchmarks/README.md, "nano-m after shipping")
        ),
        "edgetrack-nano-s": Recipe(
            "edgetrack-nano-s",
            "nanotrack-v2",
            v2,
            (
                Stage(Widths(0.75, 0.75, 0.5), 1000),
                Stage(Widths(0.55, 0.6, 0.35, 0.75), 1000),
                Stage(Widths(0.35, 0.5, 0.25, 0.5), 3000),
            ),
            default_data(),
            # with BatchNorm frozen as well, this student collapsed at its second stage (0.554 -> 0.147 AUC on train/)
            losses="teacher-only",
            # widening all of them would give 72,721 parameters, over nano-s's 70K
            keep_widths=("*.se", "stage3"),
            # +0.051 AUC on the benchmark (0.619 -> 0.670); the first nano-s gained +0.030 (benchmarks/tune_report.md)
            tune_trials=40,
        ),
    }


def stage_folder(work: Path, recipe: Recipe, index: int) -> Path:
    return work / recipe.name / f"stage{index + 1}"


def train(recipe: Recipe, work: Path) -> Path:
    """Run (or continue) every stage; return the last stage's weights file."""
    teacher_widths = dict(PRESETS[recipe.base].widths)
    previous = None
    for index, stage in enumerate(recipe.stages):
        folder = stage_folder(work, recipe, index)
        folder.parent.mkdir(parents=True, exist_ok=True)
        record = folder.parent / f"stage{index + 1}.yaml"
        entry = {"base": recipe.base, "name": recipe.name, "teacher": recipe.base, "widths": stage.widths.of(teacher_widths, recipe.aligned)}
        if previous is not None:
            entry["shrink_from"] = str(previous.relative_to(record.parent))
        write_atomic(record, yaml.safe_dump(entry, sort_keys=False))
        config = load_config(
            None,
            epochs=1,
            steps_per_epoch=stage.steps,
            batch_size=recipe.batch_size,
            seed=recipe.seed,
            log_every=50,
            student_init="random" if recipe.init == "random" and previous is None else "shrink",
            batchnorm=recipe.batchnorm,
            **{"optim.lr": recipe.lr, "data.sources": list(recipe.data), "validation.every": 0},
            **{f"loss.{k}": v for k, v in {**dataclasses.asdict(LOSS_PRESETS[recipe.losses]), **dict(recipe.loss_weights)}.items()},
        )
        resume = (folder / "last.pt").is_file()
        print(f"{recipe.name} stage {index + 1}/{len(recipe.stages)}: {stage.steps} steps{' (resumed)' if resume else ''}", flush=True)
        run(RunSpec(out=folder, config=config, students=(str(record),) * recipe.students, teacher=recipe.teacher, resume=resume, progress=False, note=print))
        previous = folder / f"{recipe.name}.pt"
    return previous


def hyper_line(recipe: Recipe, hyper: Hyper) -> str:
    values = f"penalty_k {hyper.penalty_k:.4f}, window_influence {hyper.window_influence:.4f}, lr {hyper.lr:.4f}, lost_threshold {hyper.lost_threshold:.4f}"
    if not recipe.tune_trials:
        return f"NanoTrack v2's ({values})"
    return f"tuned by `edgetrack tune` on `$EDGETRACK_DATA/train`, {recipe.tune_trials} trials, seed 0 ({values})"


def card(recipe: Recipe, row: dict, reference: dict, torch_params: int, hyper: Hyper) -> str:
    """The model card: what the student is, how it was made and what it scores."""
    diff = row["vs_reference"]
    cores = len(os.sched_getaffinity(0))
    stages = "; ".join(
        f"{s.widths.expand:g}/{s.widths.stage:g}/{s.widths.tower:g}/{s.widths.corr:g} for {s.steps} steps" for s in recipe.stages
    )
    lines = [
        f"# {recipe.name}",
        "",
        f"A NanoTrack student distilled by edgetrack from `{recipe.base}` ({recipe.teacher_weights.name}).",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {torch_params:,} in torch; {row['params']:,} in the bundle (BatchNorm folded) |",
        f"| search GFLOPs | {row['search_gflops']:.3f} |",
        f"| fp32 size | {row['size_mb']:.2f} MB |",
        f"| mean AUC, 15-sequence benchmark | {row['auc']:.3f} (NanoTrack v2 {reference['auc']:.3f}) |",
        f"| AUC - v2, 95% bootstrap interval | {Interval(diff['mean'], diff['low'], diff['high'])} |",
        f"| fps (update calls, {cpu_model()}, {cores} core{'s' if cores > 1 else ''}) | {row['fps']:.0f} (v2 {reference['fps']:.0f}: {row['fps'] / reference['fps']:.2f}x) |",
        "",
        "## Recipe",
        "",
        f"- teacher: `{recipe.base}`; losses: {recipe.losses}"
        + "".join(f", {term} {weight:g}" for term, weight in recipe.loss_weights)
        + f"; SGD lr {recipe.lr}, {recipe.batch_size} pairs a step, seed {recipe.seed}",
        "- BatchNorm: " + (f"frozen while training, its running statistics re-estimated on {TrainConfig().batchnorm_calibration * recipe.batch_size} pairs after each shrink" if recipe.batchnorm == "frozen" else "batch statistics while training"),
        f"- progressive shrinking, width factors expand/stage/tower/corr: {stages} ({recipe.steps} steps, "
        f"{recipe.steps * recipe.batch_size:,} pairs)",
        "- widths: " + ("rounded to multiples of 8 while training" if recipe.aligned else "the nearest to each factor while training, then widened to multiples of 8 with zero channels (the same outputs) for ONNX Runtime's fast kernels")
        + (f", except {', '.join(f'`{k}`' for k in recipe.keep_widths)}" if recipe.keep_widths else ""),
        "- data: " + ", ".join(f"`{d.replace(str(DATA), '$EDGETRACK_DATA')}`" for d in recipe.data),
        f"- tracking hyper-parameters: {hyper_line(recipe, hyper)}",
        "",
        "## AUC per sequence",
        "",
        "| sequence | this | v2 |",
        "|---|---|---|",
        *(f"| {n} | {s['auc']:.3f} | {reference['sequences'][n]['auc']:.3f} |" for n, s in sorted(row["sequences"].items())),
        "",
        "## Reproduce",
        "",
        f"    .venv/bin/python benchmarks/train_pretrained.py --students {recipe.name} --work runs/pretrained --ship",
    ]
    return "\n".join(lines) + "\n"


def score(recipe: Recipe, weights: Path, work: Path, rounds: int) -> tuple[Path, str]:
    """Export the student, benchmark it beside NanoTrack v2 (``WORK/NAME.benchmark.json`` and ``.md``) and write its card."""
    model = load_model(None, weights)
    wider = aligned_widths(model.config.widths)
    model = widen(model, {g: w for g, w in wider.items() if not any(fnmatch.fnmatchcase(g, k) for k in recipe.keep_widths)})
    bundle = export_model(model, work / f"{recipe.name}.etb", force=True, parity_data=DATA / "sequences", weights=weights)
    if recipe.tune_trials:
        shutil.rmtree(work / f"{recipe.name}.tune", ignore_errors=True)
        tuned = tune(bundle.path, DATA / "train", work / f"{recipe.name}.tune", trials=recipe.tune_trials, in_place=True, threads=1)
        print(f"{recipe.name}: tuned on train/, AUC {tuned.tune_before.auc:.4f} -> {tuned.tune_after.auc:.4f}", flush=True)
        bundle = load_bundle(bundle.path)
    with tempfile.TemporaryDirectory() as tmp:
        entries = [open_entry("nanotrack-v2", Path(tmp)), open_entry(f"{recipe.name}={bundle.path}", Path(tmp))]
        run_benchmark(entries, DATA / "benchmark", rounds)
        rows = compare([e.row() for e in entries])
    write_report(rows, DATA / "benchmark", rounds, work / f"{recipe.name}.benchmark")
    reference, student = (dataclasses.asdict(r) for r in rows)
    text = card(recipe, student, reference, sum(p.numel() for p in model.parameters()), bundle.meta.hyper)
    write_atomic(work / f"{recipe.name}.md", text)
    return bundle.path, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", default=",".join(recipes()), help="comma-separated names of the students to make")
    parser.add_argument("--work", type=Path, default=Path("runs/pretrained"))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds of the benchmark")
    parser.add_argument("--ship", action="store_true", help="copy the bundles and cards into runtime/pretrained/")
    args = parser.parse_args()
    chosen = recipes()
    for name in args.students.split(","):
        recipe = chosen[name]
        weights = train(recipe, args.work)
        bundle, text = score(recipe, weights, args.work, args.rounds)
        print(text, flush=True)
        if args.ship:
            target = SHIPPED / bundle.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(bundle, target)
            shutil.copy(args.work / f"{recipe.name}.md", SHIPPED / f"{recipe.name}.md")
            print(f"shipped {target}", flush=True)


if __name__ == "__main__":
    main()
