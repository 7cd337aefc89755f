"""What each shipped student is and how it is trained: its teacher, its progressive-shrinking stages, its losses and
data (the ``Recipe``), and ``train``, which runs or continues every stage as an ``edgetrack distill`` run folder.

Only the distill floor is imported here, so a machine that trains without scoring (``gpu_distill.py`` on a lent
GPU) needs neither ONNX nor ONNX Runtime. ``train_pretrained.py`` exports, scores and ships what this trains.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgetrack.distill.config import load_config
from edgetrack.distill.losses import LOSS_PRESETS
from edgetrack.distill.models import PRESETS
from edgetrack.distill.models.base import CHANNEL_MULTIPLE, scaled_width
from edgetrack.distill.shrink import aligned_widths
from edgetrack.distill.trainer import RunSpec, run
from edgetrack.runtime.files import write_atomic

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
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


#: ``Recipe.alignment`` -> what it means, as the model card says it
ALIGNMENTS = {
    "widen": "the nearest to each factor while training, then widened to multiples of 8 with zero channels (the same outputs) for ONNX Runtime's fast kernels",
    "nearest": "rounded to the nearest multiples of 8 while training",
    "up": "rounded up to multiples of 8 while training: the widths a widened student would be exported at, every channel of them trained",
}


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
    #: how the training widths meet the multiples of 8 every exported bundle has (``ALIGNMENTS``)
    alignment: str = "widen"
    #: width groups (fnmatch patterns) the widening before export leaves as trained: the squeeze-excite groups are
    #: fully connected layers, outside the convolution kernels alignment is for
    keep_widths: tuple[str, ...] = ()
    #: trials of ``edgetrack tune`` on ``$EDGETRACK_DATA/train`` after export; 0 keeps NanoTrack v2's values
    tune_trials: int = 0
    #: BatchNorm while training (``TrainConfig.batchnorm``): ``batch`` statistics, or ``frozen`` running ones
    batchnorm: str = "batch"
    #: batches each shrink's least-squares refit of the pruned layers uses (``TrainConfig.shrink_refit``); 0: none
    shrink_refit: int = 0
    #: layers of the teacher's backbone the template runs instead of the student's (NanoTrack's
    #: ``template_front``: frozen, at the teacher's widths, free per frame); 0: template and search share one
    template_front: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"recipe {self.name}: alignment {self.alignment!r} is none of {', '.join(ALIGNMENTS)}")

    def exported_widths(self, widths: dict[str, int]) -> dict[str, int]:
        """The widths a student trained at ``widths`` is exported at: rounded up to multiples of 8 for ONNX Runtime's
        fast kernels (``widen`` adds zero channels), but the ``keep_widths`` groups."""
        kept = {g for g in widths if any(fnmatch.fnmatchcase(g, k) for k in self.keep_widths)}
        return {g: widths[g] if g in kept else w for g, w in aligned_widths(widths).items()}

    def training_widths(self, stage: Stage, teacher: dict[str, int]) -> dict[str, int]:
        widths = stage.widths.of(teacher, self.alignment == "nearest")
        return self.exported_widths(widths) if self.alignment == "up" else widths

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
            # the stem and stage outputs (the channels every block adds into) stay at v2's width: +0.019 [-0.007,
            # +0.056] AUC over two seeds against the same recipe at 0.9/0.8/0.75 stage widths, at about the same speed
            # (benchmarks/README.md, "nano-m with v2's stage widths")
            (Stage(Widths(0.9, 1.0, 0.75), 1000), Stage(Widths(0.8, 1.0, 0.6), 1000), Stage(Widths(0.75, 1.0, 0.5), 3000)),
            default_data(),
            # +0.062 [+0.019, +0.125] AUC over the teacher-student losses with batch statistics on the benchmark
            # (recipe_ablation.py's teacher-only-frozen-bn arm against its shipped arm)
            losses="teacher-only",
            batchnorm="frozen",
            # without it seed 1 collapsed at stage 3 (0.259; recipe_ablation.py's teacher-only-frozen-bn-log arms)
            loss_weights=(("dense_box_log", 1.0),),
            # refit after each shrink with a smaller lr: +0.007 [+0.000, +0.014] over two seeds (the refit arms)
            lr=0.003,
            shrink_refit=16,
            # the template runs v2's stem and blocks 1-5 (frozen, +81,488 parameters, free per frame): +0.005
            # [-0.002, +0.014] AUC over seeds 0 and 1, and higher in all eight paired runs (benchmarks/README.md)
            template_front=6,
            # trained at the widths it is exported at (every channel trained; the same bundle shapes and speed): +0.001
            # [-0.003, +0.004] AUC over seeds 0 and 1, kept by a rule set before the runs (recipe_ablation.py's
            # trained-alignment arms; benchmarks/README.md, "nano-m shipped now: trained at its exported widths")
            alignment="up",
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


def train(recipe: Recipe, work: Path, settings: dict[str, object] | None = None) -> Path:
    """Run (or continue) every stage; return the last stage's weights file. ``settings`` are config overrides
    beyond the recipe's (dotted keys, as ``load_config`` takes them), e.g. a GPU run's ``data.workers``."""
    teacher_widths = dict(PRESETS[recipe.base].widths)
    previous = None
    for index, stage in enumerate(recipe.stages):
        folder = stage_folder(work, recipe, index)
        folder.parent.mkdir(parents=True, exist_ok=True)
        record = folder.parent / f"stage{index + 1}.yaml"
        entry = {"base": recipe.base, "name": recipe.name, "teacher": recipe.base, "widths": recipe.training_widths(stage, teacher_widths)}
        if recipe.template_front:
            entry["options"] = {"template_front": recipe.template_front}
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
            shrink_refit=recipe.shrink_refit,
            **{"optim.lr": recipe.lr, "data.sources": list(recipe.data), "validation.every": 0},
            **{f"loss.{k}": v for k, v in {**dataclasses.asdict(LOSS_PRESETS[recipe.losses]), **dict(recipe.loss_weights)}.items()},
            **(settings or {}),
        )
        resume = (folder / "last.pt").is_file()
        print(f"{recipe.name} stage {index + 1}/{len(recipe.stages)}: {stage.steps} steps{' (resumed)' if resume else ''}", flush=True)
        run(RunSpec(out=folder, config=config, students=(str(record),) * recipe.students, teacher=recipe.teacher, resume=resume, progress=False, note=print))
        previous = folder / f"{recipe.name}.pt"
    return previous
