"""Training: one model alone (``edgetrack train``) or students distilled from a teacher (``edgetrack distill``).

Both are one loop. Every student sees the same pairs; the teacher (frozen, in eval mode) runs once per batch when
a loss or a teacher-labelled pair needs it. Students are optimised together with one backward pass: their losses
touch each other only through detached outputs, so each student's gradient is its own.

Exact resumption: pair ``i`` is a function of the seed and ``i`` alone (``PairSampler``), so a checkpoint needs
only the step, the models, the optimisers, the schedulers, the loss scaler and the torch RNG. A resumed run sees
the pairs it would have seen and ends with the weights an uninterrupted run ends with.

``run`` drives a ``Trainer``: ``setup`` (models, optimisers, data; ``resume`` from a checkpoint), ``train_step``,
``end_epoch`` and ``save``. Checkpoints are the typed records of ``checkpoint``, written as plain dicts.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from edgetrack.runtime import geometry as geo
from edgetrack.runtime.errors import EdgetrackError, InputError
from edgetrack.runtime.files import write_atomic
from edgetrack.runtime.output_folder import make_writable
from edgetrack.runtime.tracker import InputWriter

from . import distributed
from .checkpoint import EpochRecord, ModelWeights, StudentState, TrainingCheckpoint, load_file, load_model, model_from_record, save_file
from .config import TrainConfig, config_dict, from_dict
from .data.catalog import open_data
from .data.pairs import PairSampler
from .losses import Batch, ModelOutputs, ground_truth_losses, student_losses
from .models import SiameseModel, build_model, preset
from .models.base import ModelConfig
from .shrink import refit, shrink
from .targets import build_targets
from .vector_math import initialise_vector_math
from .validate import validate, validation_sequences

LOG_TERMS = ("gt_cls", "gt_loc", "soft", "hard", "dense_box", "dense_box_log", "response", "share", "total")
#: What a run writes in its folder before its first checkpoint, and takes back when it fails before one.
EARLY_ENTRIES = ("validation", "skipped.txt", "log.csv", "tensorboard")


def ignore_note(line: str) -> None:
    """The default ``note`` of a run: its messages go nowhere."""


class TrainingInterrupted(EdgetrackError):
    """Stopped by a signal after saving a checkpoint; ``exit_code`` follows the shell's 128 + signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class TrainingDiverged(EdgetrackError):
    """A loss or a student's weights became non-finite; the run stopped without saving them."""


@dataclass(frozen=True)
class RunSpec:
    """What to train, where, and how: the command line's arguments, typed."""

    out: Path
    config: TrainConfig
    #: student specs: zoo preset names, or YAML model records (``edgetrack search-student``'s best.yaml)
    students: tuple[str, ...]
    #: ``NAME[:CKPT]``; None trains the students alone
    teacher: str | None = None
    resume: bool = False
    device: str = "auto"
    #: a progress bar on stderr
    progress: bool = True
    #: receives the run's messages (model sizes, data, resumption), one line each; library code does not print
    note: Callable[[str], None] = field(default=ignore_note, repr=False)


@dataclass
class RunResult:
    """Where a finished run ended: its step, each student's weights file, and its epoch records as plain dicts."""

    step: int
    weights: dict[str, Path]
    history: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- models


class TrainingView(nn.Module):
    """A model's forward for training: outputs plus the embedded template and search (for the response loss).

    It is a module so that DistributedDataParallel sees the forward it must wrap.
    """

    def __init__(self, model: SiameseModel):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, x: torch.Tensor):
        zfeat, xfeat = self.model.embed(z), self.model.embed(x)
        return self.model.head(xfeat, *self.model.template_features(z, zfeat)), zfeat, xfeat


def _shared_forward(model: SiameseModel, pair: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Template and search through the shared backbone, so that every layer of a student runs as often as its
    parent's (a template front would skip the student's first layers on the template): the refit's forward."""
    z, x = pair
    zf = model.shared_template_features(z)
    return model.head(model.embed(x), *zf)


def load_teacher(spec: str) -> SiameseModel:
    """``NAME:CKPT`` (a zoo preset and its weights, or a model trained here) as a frozen model in eval mode."""
    name, _, weights = spec.partition(":")
    if not weights:
        raise InputError(f"teacher {spec!r} has no weights: give NAME:CHECKPOINT, e.g. nanotrack-v3:nanotrackv3.pth")
    try:
        teacher = load_model(name or None, Path(weights))
    except FileNotFoundError:
        raise InputError(f"teacher checkpoint {weights} not found") from None
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"teacher {spec!r}: {str(exc).splitlines()[0]}") from None
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def student_config(spec: str) -> ModelConfig:
    """A zoo preset by name, or a YAML model record (``base``, ``name``, ``widths``)."""
    return _student_spec(spec)[0]


def _student_spec(spec: str) -> tuple[ModelConfig, Path | None]:
    """The student's model, and the weights it is shrunk from when its YAML record names them (``shrink_from``, a
    file written by train or distill: progressive shrinking) rather than from the teacher."""
    if spec.endswith((".yaml", ".yml")):
        import yaml

        try:
            record = yaml.safe_load(Path(spec).read_text())
            origin = record.get("shrink_from")
            return model_from_record(record).config, Path(spec).parent / origin if origin else None
        except OSError as exc:
            raise InputError(f"cannot read student {spec}: {exc.strerror}") from None
        except (AttributeError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            raise InputError(f"student {spec} is not a model record (base, name, widths): {exc}") from None
    try:
        return preset(spec), None
    except ValueError as exc:
        raise InputError(str(exc)) from None


def shrink_source(origin: Path | None, teacher: SiameseModel | None) -> SiameseModel | None:
    """What a student is shrunk from: the weights its record names (progressive shrinking), else the teacher."""
    return load_teacher(f":{origin}") if origin else teacher


def make_students(specs: tuple[str, ...], teacher: SiameseModel | None, config: TrainConfig) -> list[SiameseModel]:
    """Students shrunk from the teacher or from the weights their record names (or freshly initialised), with unique
    names; repeats are perturbed."""
    students, seen = [], {}
    for index, spec in enumerate(specs):
        base, origin = _student_spec(spec)
        seen[base.name] = seen.get(base.name, 0) + 1
        name = base.name if seen[base.name] == 1 else f"{base.name}-{seen[base.name]}"
        torch.manual_seed(config.seed + index)
        source = shrink_source(origin, teacher)
        if source is not None and config.student_init == "shrink":
            if base.spec != source.config.spec:
                origin_name = "teacher" if origin is None else f"source {origin}"
                raise InputError(f"student {spec} is a {base.family}, its {origin_name} a {source.config.family}: a student is shrunk from a teacher of its family (or use student_init: random)")
            try:
                student = shrink(source, base.widths, name=name, options=base.options)
            except ValueError as exc:
                raise InputError(f"student {spec}: {exc}") from None
        else:
            student = build_model(base.with_widths({}, name=name))
            if student.copied_from_source:
                raise InputError(f"student {spec}: {student.copied_from_source} is a frozen copy of its teacher's layers, so it starts by shrinking (student_init: shrink)")
        if index and config.student_noise:
            with torch.no_grad():
                for p in student.parameters():
                    if p.numel() > 1:
                        p.add_(torch.randn_like(p) * p.std() * config.student_noise)
        students.append(student.train())
    return students


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_batchnorm(model: nn.Module) -> None:
    """Put ``model``'s BatchNorm layers in eval mode: they normalise by their running statistics, which stay as they
    are; their affine weights still learn."""
    for layer in batchnorm_layers(model):
        layer.eval()


# ------------------------------------------------------------------------------------------------------ data


class PairDataset(torch.utils.data.Dataset):
    """Pair ``i`` as network inputs (the runtime's input layout) and targets (the runtime's grids)."""

    def __init__(self, sampler: PairSampler, config: ModelConfig, seed: int):
        self.sampler, self.spec, self.geometry, self.seed = sampler, config.spec, config.geometry, seed
        self.grid = config.spec.grid(config.geometry)
        self.writer = InputWriter(config.bundle_meta())

    def __getitem__(self, index: int) -> dict:
        pair = self.sampler.pair(index)
        targets = build_targets(self.spec, self.geometry, pair.box, target_rng(self.seed, index), self.grid)
        g = self.geometry
        z = np.empty((3, g.exemplar_size, g.exemplar_size), np.float32)
        x = np.empty((3, g.instance_size, g.instance_size), np.float32)
        self.writer.write(pair.template, z)
        self.writer.write(pair.search, x)
        return {
            "z": z,
            "x": x,
            "label": targets.label.astype(np.int64),
            "loc": targets.loc,
            "loc_weight": targets.loc_weight,
            "labelled": pair.labelled,
            "redraws": pair.redraws,
            "index": index,
        }


def target_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of pair ``index``'s targets (siamrpn's anchor sampling), whoever builds them."""
    return np.random.default_rng([seed, index, 1])


def _quiet_worker(_: int) -> None:
    # A worker makes pairs on one core: thread pools of its own (OpenCV's, torch's) would only contend with training.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def batches(dataset: PairDataset, config: TrainConfig, world: distributed.World, start_step: int, stop_step: int | None = None) -> Iterator[dict]:
    """The batches of steps ``start_step`` to ``stop_step`` (the run's last step); this rank's share of pair indices
    ``step * B * world + ...``."""
    b = config.batch_size
    stop_step = config.total_steps if stop_step is None else stop_step
    indices = [range((step * world.size + world.rank) * b, (step * world.size + world.rank + 1) * b) for step in range(start_step, stop_step)]
    workers = config.data.workers
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=indices,
        num_workers=workers,
        worker_init_fn=_quiet_worker if workers else None,
        prefetch_factor=2 if workers else None,
        # A forked worker inherits OpenCV's and OpenMP's thread pools mid-flight and can hang in them.
        multiprocessing_context="spawn" if workers else None,
    )
    return iter(loader)


def teacher_labels(config: ModelConfig, logits: np.ndarray, loc: np.ndarray, grid: np.ndarray) -> list[tuple[tuple, float] | None]:
    """For each teacher-labelled pair, the teacher's box (``cx, cy, w, h`` as targets take it) and its score.

    The best location is chosen as the tracker chooses it (the family's window and decoding), minus the size
    penalty: a pair has no previous size. A family that regresses no box (siamfc) teaches its unlabeled pairs
    through the teacher-student losses alone (None).
    """
    spec = config.spec
    if spec.loc_output is None:
        return [None] * len(logits)
    window, decode, hyper = spec.window(config.geometry), spec.decode, config.hyper
    labels = []
    for cls, box in zip(logits, loc):
        with np.errstate(over="ignore"):
            scores = geo.two_way_softmax(cls)
        best = int(np.argmax(geo.apply_window(scores, window, hyper.window_influence)))
        cx, cy, w, h = (float(v[0]) for v in decode(box[:, best : best + 1], grid[best : best + 1]))
        labels.append(((cx, cy, w, h), float(scores[best])) if w > 1 and h > 1 and math.isfinite(w * h) else None)
    return labels


# --------------------------------------------------------------------------------------------- optimisation


def _to_channels_last(model: nn.Module, device: torch.device) -> None:
    """Move ``model`` to ``device`` with its 4-d tensors channels_last: about 30% faster convolutions on a CPU
    (benchmarks/README.md). ``Module.to(memory_format=...)`` refuses a model holding a 5-d tensor (SiamRPN's),
    so the tensors are converted one by one."""
    model.to(device)
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of ``optim.optimizer`` over the model's trainable parameters."""
    o = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning rate at ``step`` as a multiple of ``optim.lr``: linear warm-up, then cosine or log decay."""
    o = config.optim
    warmup = min(o.warmup_steps, config.total_steps - 1)
    if step < warmup:
        return o.warmup_factor + (1 - o.warmup_factor) * step / warmup
    progress = (step - warmup) / max(1, config.total_steps - 1 - warmup)
    final = o.final_lr / o.lr
    if o.schedule == "log":
        return final**progress
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------------- run


class StopSignals:
    """Turns SIGTERM and SIGINT into a flag the loop reads between steps, so a stop always saves a checkpoint."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Logs:
    """CSV and (when installed) TensorBoard logs of rank 0. On resume the CSV is appended to under its own header,
    so a run begun by a version that logged other terms keeps aligned columns (a term it lacks goes to TensorBoard
    only). Both first drop what was logged after ``step``, the step the run continues from: a run killed after its
    last checkpoint logged steps that it trains again."""

    def __init__(self, out: Path, enabled: bool, step: int = 0, note: Callable[[str], None] = ignore_note):
        self.enabled = enabled
        self.tensorboard = None
        if not enabled:
            return
        path = out / "log.csv"
        columns = ["step", "epoch", "lr", "student", *LOG_TERMS, "pairs_per_s"]
        fresh = not path.exists() or path.stat().st_size == 0
        if not fresh:
            columns = _keep_log_rows(path, step) or columns
        self._file = open(path, "a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=columns, extrasaction="ignore", restval="")
        if fresh:
            self._csv.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(out / "tensorboard"), purge_step=step + 1 if step else None)
        except ImportError:
            note("note: tensorboard is not installed; logging to log.csv only (pip install tensorboard)")

    def losses(self, step: int, epoch: int, lr: float, name: str, means: dict[str, float], rate: float) -> None:
        if not self.enabled:
            return
        terms = {t: f"{v:.6g}" for t, v in means.items()}
        self._csv.writerow({"step": step, "epoch": epoch, "lr": f"{lr:.6g}", "student": name, **terms, "pairs_per_s": f"{rate:.1f}"})
        self._file.flush()
        if self.tensorboard:
            for term, value in means.items():
                self.tensorboard.add_scalar(f"{name}/loss/{term}", value, step)
            self.tensorboard.add_scalar(f"{name}/lr", lr, step)

    def validation(self, step: int, name: str, scores: dict[str, float]) -> None:
        if self.enabled and self.tensorboard:
            for key, value in scores.items():
                self.tensorboard.add_scalar(f"{name}/val/{key}", value, step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self.tensorboard:
                self.tensorboard.close()


def _keep_log_rows(path: Path, step: int) -> list[str]:
    """Rewrite the non-empty CSV log at ``path`` without its rows after ``step``; its header."""
    with open(path, newline="") as existing:
        rows = list(csv.reader(existing))
    kept = [rows[0], *(row for row in rows[1:] if row and int(row[0]) <= step)]
    if len(kept) < len(rows):
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(kept)
        write_atomic(path, text.getvalue())
    return rows[0]


@dataclass(frozen=True)
class RunFolder:
    """The run folder as this run found it. A run that fails before its first checkpoint takes back what it wrote
    there (``EARLY_ENTRIES`` that were not there before) and the folders it created, if then empty; nothing else."""

    path: Path
    #: the topmost folder this run created: ``path`` or one of its parents; None when ``path`` existed
    created: Path | None
    found: frozenset[str]

    def clean(self) -> None:
        if (self.path / "last.pt").exists():
            return
        for name in EARLY_ENTRIES:
            if name not in self.found:
                _remove(self.path / name)
        if self.created is not None:
            _remove_empty(self.path, self.created)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top``, stopping at the first that is not empty."""
    for path in (folder, *folder.parents):
        try:
            path.rmdir()
        except OSError:
            return
        if path == top:
            return


def _prepare_out(spec: RunSpec) -> RunFolder:
    """Check the run folder agrees with ``--resume`` and can be written, and note what it held before this run."""
    last = spec.out / "last.pt"
    if spec.resume and not last.is_file():
        raise InputError(f"nothing to resume: {last} does not exist (start the run without --resume)")
    if not spec.resume and last.exists():
        raise InputError(f"{spec.out} already holds a run: continue it with --resume, or give another --out")
    found = frozenset(p.name for p in spec.out.iterdir()) if spec.out.is_dir() else frozenset()
    return RunFolder(spec.out, make_writable(spec.out, "--out"), found)


def _open_sources(config: TrainConfig, out: Path, world: distributed.World, note: Callable[[str], None]) -> list:
    """The data sources of ``config``, each announced with its size; what they skipped goes to ``skipped.txt``."""
    sources, skipped = [], []
    for spec in config.data.sources:
        source, data = open_data(spec, config.seed)
        sources.append(source)
        skipped.extend(f"{spec}: {reason}" for reason in data.skipped)
        skips = f", skipped {len(data.skipped)} (see skipped.txt)" if data.skipped else ""
        note(f"data {spec}: {len(source.sequences)} sequences{skips}")
    if world.main and skipped:
        write_atomic(out / "skipped.txt", "\n".join(skipped) + "\n")
    return sources


def _validation_set(config: TrainConfig, out: Path, world: distributed.World):
    """The validation sequences: those of ``validation.sequences``, or synthetic ones written in the run folder."""
    v = config.validation
    if not v.every:
        return []
    if v.sequences:
        return validation_sequences(v.sequences)
    from .data.synthetic import synthetic_sequence, write_sequence

    folder = out / "validation"
    if world.main:
        for index in range(v.synthetic):
            target = folder / f"synthetic-{index:03d}"
            if not target.exists():
                # A seed no training sequence uses: validation never sees a training frame.
                write_sequence(synthetic_sequence(config.seed + 1_000_003, index), target)
    distributed.barrier(world)
    return validation_sequences([folder]) if v.synthetic else []


def run(spec: RunSpec) -> RunResult:
    """Train as ``spec`` says, on this process's share of the distributed world (one process: all of it)."""
    initialise_vector_math()
    world = distributed.join(spec.device)
    try:
        return _run(spec, world)
    finally:
        distributed.leave(world)


def _run(spec: RunSpec, world: distributed.World) -> RunResult:
    """The run in its folder; a run that fails before its first checkpoint takes back what it wrote there."""
    folder = _prepare_out(spec) if world.main else None
    try:
        trainer = Trainer(spec, world)
        trainer.setup()
        return trainer.fit()
    except BaseException:
        if folder is not None:
            folder.clean()
        raise


class LossMeter:
    """Each student's loss terms summed over the steps since the last log row, and the clock of the pair rate."""

    def __init__(self, students: int):
        self.students = students
        self.reset()

    def reset(self) -> None:
        self.sums: list[dict[str, float]] = [{} for _ in range(self.students)]
        self.counted = 0
        self.restart_clock()

    def restart_clock(self) -> None:
        self.tick = time.perf_counter()

    def add(self, terms: list[dict[str, torch.Tensor]]) -> None:
        self.counted += 1
        for total, t in zip(self.sums, terms):
            for key, value in t.items():
                total[key] = total.get(key, 0.0) + float(value.detach())

    def means(self) -> list[dict[str, float]]:
        return [{k: v / self.counted for k, v in total.items()} for total in self.sums]

    def rate(self, pairs_per_step: int) -> float:
        """Pairs per second since the clock last started."""
        return self.counted * pairs_per_step / (time.perf_counter() - self.tick)


class Trainer:
    """One training run of this process: ``setup`` builds the models, optimisers and data (and ``resume``s a
    checkpoint), then ``fit`` runs ``train_step`` on every batch, ``end_epoch`` after each epoch's last step and
    ``save`` at each checkpoint. Messages go to ``spec.note`` (rank 0 only)."""

    def __init__(self, spec: RunSpec, world: distributed.World):
        self.spec, self.world = spec, world
        self.out = spec.out
        self.note = spec.note if world.main else ignore_note
        self.redraws = 0
        self.logs: Logs | None = None
        self.progress = None

    # ------------------------------------------------------------------------------------------------ setup

    def setup(self) -> None:
        """Build the models and optimisers, resume them from ``last.pt`` under ``--resume``, and open the data."""
        saved = self._checkpoint_to_resume()
        # A resumed run is the same run: its settings come from the checkpoint, not from today's command line.
        self.config = from_dict(TrainConfig, saved.config) if saved else self.spec.config
        self.teacher_spec = saved.teacher if saved else self.spec.teacher
        self.student_specs = saved.student_specs if saved else self.spec.students
        self._build_models()
        self._build_optimizers()
        if saved:
            self.resume(saved)
        self._open_data()
        refitted = False
        if not saved and self.config.shrink_refit and self.config.student_init == "shrink":
            refitted = self._refit_students()
        if self.config.batchnorm == "frozen":
            # A refit reproduces the source's outputs before its BatchNorms: their statistics hold as they are.
            if not saved and self.config.batchnorm_calibration and not refitted:
                self._calibrate_batchnorm()
            for student in self.students:
                freeze_batchnorm(student)

    def _checkpoint_to_resume(self) -> TrainingCheckpoint | None:
        if not self.spec.resume:
            return None
        path = self.out / "last.pt"
        return TrainingCheckpoint.from_dict(load_file(path), path)

    def _build_models(self) -> None:
        """The teacher and students on the device, and the training views the loop calls (DDP-wrapped on several ranks)."""
        torch.manual_seed(self.config.seed)
        self.teacher = load_teacher(self.teacher_spec) if self.teacher_spec else None
        self.students = make_students(self.student_specs, self.teacher, self.config)
        first = self.students[0].config
        if any(s.config.spec != first.spec or s.config.geometry != first.geometry for s in self.students):
            raise InputError("students train on the same pairs, so they must share a family and geometry")
        if self.config.loss.dense_box_log and first.spec.targets != "points-ltrb":
            raise InputError(
                f"loss.dense_box_log needs boxes that are ltrb distances (nanotrack); {first.family} regresses "
                f"{first.spec.targets}: set loss.dense_box_log to 0"
            )
        self.device = self.world.device
        for model in (self.teacher, *self.students):
            if model is not None:
                _to_channels_last(model, self.device)
        self._announce_sizes()
        views = [TrainingView(s) for s in self.students]
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # find_unused_parameters: zoo models keep layers the published trackers never apply (NanoTrack's neck).
            views = [nn.parallel.DistributedDataParallel(v, device_ids=ids, find_unused_parameters=True) for v in views]
        self.views = views
        self.teacher_view = TrainingView(self.teacher) if self.teacher is not None else None

    def _announce_sizes(self) -> None:
        if self.teacher is not None:
            params_t = sum(p.numel() for p in self.teacher.parameters())
            self.note(f"teacher {self.teacher.config.name}: {params_t:,} parameters")
        for s in self.students:
            params = sum(p.numel() for p in s.parameters())
            frozen = sum(p.numel() for p in s.parameters() if not p.requires_grad)
            ratio = f", {params / params_t:.2f}x the teacher's" if self.teacher is not None else ""
            self.note(f"student {s.config.name}: {params:,} parameters{ratio}{f' ({frozen:,} frozen)' if frozen else ''}")

    def _build_optimizers(self) -> None:
        """Each student's optimiser and scheduler, the shared loss scaler, and a run at step 0."""
        config = self.config
        self.optimizers = [make_optimizer(s, config) for s in self.students]
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda step: lr_factor(step, config)) for o in self.optimizers]
        self.amp = config.optim.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0
        self.history: list[EpochRecord] = []

    def resume(self, saved: TrainingCheckpoint) -> None:
        """Continue from ``saved``: the weights, optimisers, schedulers, loss scaler, torch RNG, step and history."""
        for student, optimizer, scheduler, state in zip(self.students, self.optimizers, self.schedulers, saved.students):
            student.load_state_dict(state.weights.state_dict)
            optimizer.load_state_dict(state.optimizer)
            scheduler.load_state_dict(state.scheduler)
        self.scaler.load_state_dict(saved.scaler)
        torch.set_rng_state(saved.rng)
        self.step, self.history = saved.step, list(saved.history)
        self.note(f"resuming {self.out} at step {self.step} of {self.config.total_steps}")

    def _open_data(self) -> None:
        """The pairs every student trains on, the validation sequences, and whether the teacher runs each step."""
        config = self.config
        sources = _open_sources(config, self.out, self.world, self.note)
        has_unlabeled = any(not seq.labelled for source in sources for seq in source.sequences)
        if self.teacher is None and has_unlabeled:
            raise InputError("unlabeled data gets its targets from a teacher: use `edgetrack distill --teacher ...`, or drop it from --data")
        first = self.students[0].config
        sampler = PairSampler(sources, first.geometry, config.data.pairs, config.seed)
        self.dataset = PairDataset(sampler, first, config.seed)
        self.val_sequences = _validation_set(config, self.out, self.world)
        self.family = first.spec
        self.grid = self.family.grid(first.geometry)
        self.need_teacher = self.teacher is not None and (config.loss.uses_teacher or has_unlabeled)

    def _refit_students(self) -> bool:
        """Refit each shrunk student's pruned layers to the model it was shrunk from (``shrink.refit``) on the first
        ``shrink_refit`` batches; every rank uses rank 0's batches, so that the students stay identical. Whether
        any layer was refitted."""
        config = self.config
        first = distributed.World(0, 1, self.device)
        calibration = [
            tuple(batch[k].to(self.device, memory_format=torch.channels_last) for k in ("z", "x"))
            for batch in batches(self.dataset, config, first, 0, config.shrink_refit)
        ]
        refitted = False
        for student, spec in zip(self.students, self.student_specs):
            source = shrink_source(_student_spec(spec)[1], self.teacher)
            if source is None:
                continue
            _to_channels_last(source, self.device)
            student.eval()
            layers = refit(source.eval(), student, calibration, _shared_forward)
            student.train()
            if layers:
                refitted = True
                before = sum(layer.error_before for layer in layers) / len(layers)
                after = sum(layer.error_after for layer in layers) / len(layers)
                self.note(
                    f"{student.config.name}: {len(layers)} pruned layers refitted to {source.config.name} on "
                    f"{len(calibration) * config.batch_size} pairs, relative error {before:.3f} -> {after:.3f}"
                )
        return refitted

    def _calibrate_batchnorm(self) -> None:
        """Re-estimate the students' BatchNorm running statistics as the mean over the first
        ``batchnorm_calibration`` batches, without gradients (the statistics a shrunk student inherits are wrong)."""
        norms = [layer for student in self.students for layer in batchnorm_layers(student)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative mean
        count = self.config.batchnorm_calibration
        views = [TrainingView(student) for student in self.students]
        with torch.no_grad():
            for batch in batches(self.dataset, self.config, self.world, 0, count):
                z, x = (batch[k].to(self.device, memory_format=torch.channels_last) for k in ("z", "x"))
                for view in views:
                    view(z, x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.note(f"BatchNorm statistics re-estimated on {count * self.config.batch_size} pairs, then frozen")

    # ------------------------------------------------------------------------------------------------- loop

    def fit(self) -> RunResult:
        """Train from ``self.step`` to the last step; a stop signal saves a checkpoint and raises TrainingInterrupted."""
        config, world = self.config, self.world
        self.logs = Logs(self.out, world.main, self.step, self.note)
        if world.main and self.spec.progress:
            from tqdm import tqdm

            self.progress = tqdm(total=config.total_steps, initial=self.step, unit="step", dynamic_ncols=True)
        self.meter = LossMeter(len(self.students))
        try:
            with StopSignals() as stops:
                for batch in batches(self.dataset, config, world, self.step):
                    epoch = self.step // config.steps_per_epoch
                    self._report(self.train_step(batch, epoch), epoch)
                    if self.step % config.steps_per_epoch == 0:
                        self.end_epoch(epoch)
                    elif config.checkpoint_every and self.step % config.checkpoint_every == 0:
                        self.save("steps")
                    if distributed.any_rank(world, stops.received is not None) and self.step < config.total_steps:
                        self._interrupt(stops.received or signal.SIGTERM)
        finally:
            if self.progress is not None:
                self.progress.close()
            self.logs.close()
        return self._result()

    def train_step(self, batch: dict, epoch: int) -> list[dict[str, torch.Tensor]]:
        """One optimisation step of every student on ``batch``; their loss terms. A non-finite loss raises
        TrainingDiverged before any weight changes."""
        device = self.device
        z, x = (batch[k].to(device, memory_format=torch.channels_last) for k in ("z", "x"))
        targets = Batch(batch["label"].to(device), batch["loc"].to(device), batch["loc_weight"].to(device), batch["labelled"].float().to(device))
        self.redraws += int(batch["redraws"].sum())
        with torch.autocast(device.type, dtype=torch.float16, enabled=self.amp):
            teacher_out = self._teacher_outputs(z, x, targets, batch) if self.need_teacher else None
            terms = self._losses(z, x, targets, teacher_out, epoch)
        total = torch.stack([t["total"] for t in terms]).sum()
        if distributed.any_rank(self.world, not bool(torch.isfinite(total))):
            raise _diverged(_non_finite_loss(self.students, terms), self.step + 1, self.out)
        self._optimize(total)
        self.step += 1
        return terms

    def _teacher_outputs(self, z: torch.Tensor, x: torch.Tensor, targets: Batch, batch: dict) -> ModelOutputs:
        """The teacher's outputs on the batch; they also label the batch's teacher-labelled pairs."""
        with torch.inference_mode():
            t_outputs, t_z, t_x = self.teacher_view(z, x)
        # Inference tensors cannot be saved for the students' backward pass: plain copies can.
        out = ModelOutputs.of(self.family, {k: v.clone() for k, v in t_outputs.items()}, t_z.clone(), t_x.clone())
        _label_unlabeled(targets, batch, self.teacher, out.logits, out.loc, self.grid, self.config)
        return out

    def _losses(self, z: torch.Tensor, x: torch.Tensor, targets: Batch, teacher_out: ModelOutputs | None, epoch: int) -> list[dict[str, torch.Tensor]]:
        """Every student's forward pass and loss terms."""
        family = self.family
        outs = [ModelOutputs.of(family, *view(z, x)) for view in self.views]
        ground_truth = [ground_truth_losses(family, o, targets) for o in outs]
        teacher_loc = None
        if teacher_out is not None and teacher_out.loc is not None:
            teacher_loc = ground_truth_losses(family, teacher_out, targets)[1]
        return [
            student_losses(family, self.config.loss, epoch, i, outs, ground_truth, targets, teacher_out, teacher_loc)
            for i in range(len(self.students))
        ]

    def _optimize(self, total: torch.Tensor) -> None:
        """One backward pass of the students' summed losses, then each student's clipped optimiser step."""
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        clip = self.config.optim.clip_grad
        for student, optimizer, scheduler in zip(self.students, self.optimizers, self.schedulers):
            if clip:
                self.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(student.parameters(), clip)
            self.scaler.step(optimizer)
            scheduler.step()
        self.scaler.update()

    def _report(self, terms: list[dict[str, torch.Tensor]], epoch: int) -> None:
        """The step's losses to the progress bar, and every ``log_every`` steps their means to the logs."""
        config = self.config
        self.meter.add(terms)
        lr = self.schedulers[0].get_last_lr()[0]
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{float(terms[0]['total'].detach()):.3f}", lr=f"{lr:.2g}")
        if self.step % config.log_every == 0 or self.step == config.total_steps:
            rate = self.meter.rate(config.batch_size * self.world.size)
            for student, means in zip(self.students, self.meter.means()):
                self.logs.losses(self.step, epoch, lr, student.config.name, means, rate)
            self.meter.reset()

    def end_epoch(self, epoch: int) -> None:
        """Validate (every ``validation.every`` epochs), record the epoch and save a checkpoint."""
        self.history.append(EpochRecord(epoch + 1, self.step, self.redraws, self._validate(epoch)))
        self.save("epoch")
        distributed.barrier(self.world)
        self.meter.restart_clock()  # the pair rate measures training, not validation

    def _validate(self, epoch: int) -> dict[str, dict[str, float]]:
        """Each student's validation scores by name, on rank 0 in the epochs ``validation.every`` picks; else none."""
        v = self.config.validation
        if not (self.world.main and v.every and self.val_sequences and (epoch + 1) % v.every == 0):
            return {}
        scores = {}
        for student in self.students:
            name = student.config.name
            scores[name] = validate(student, self.val_sequences)
            self.logs.validation(self.step, name, scores[name])
        if self.progress is not None:
            self.progress.write(f"epoch {epoch + 1}: " + ", ".join(f"{name} AUC {s['auc']:.3f}" for name, s in scores.items()))
        return scores

    def _interrupt(self, signum: int) -> None:
        """Save a checkpoint and stop with the shell's exit code for ``signum``."""
        self.save("signal")
        raise TrainingInterrupted(
            f"stopped by {signal.Signals(signum).name} at step {self.step} of {self.config.total_steps}; checkpoint saved in "
            f"{self.out / 'last.pt'}: continue with the same command and --resume",
            128 + int(signum),
        )

    # ----------------------------------------------------------------------------------------------- saving

    def checkpoint(self, reason: str) -> TrainingCheckpoint:
        """The run as it stands: what ``last.pt`` holds."""
        return TrainingCheckpoint(
            step=self.step,
            config=config_dict(self.config),
            teacher=self.teacher_spec,
            student_specs=tuple(self.student_specs),
            students=tuple(StudentState(ModelWeights.of(s), o.state_dict(), sc.state_dict()) for s, o, sc in zip(self.students, self.optimizers, self.schedulers)),
            scaler=self.scaler.state_dict(),
            rng=torch.get_rng_state(),
            history=tuple(self.history),
            saved_because=reason,
        )

    def save(self, reason: str) -> None:
        """Write ``last.pt``, each student's weights file and ``history.json`` (rank 0); weights that are no longer
        finite are never saved, on any rank: TrainingDiverged."""
        for student in self.students:
            if not _finite(student):
                raise _diverged(f"the weights of {student.config.name} became non-finite", self.step, self.out)
        if not self.world.main:
            return
        checkpoint = self.checkpoint(reason)
        save_file(self.out / "last.pt", checkpoint.as_dict())
        for state in checkpoint.students:
            save_file(self.out / f"{state.weights.record.name}.pt", state.weights.as_dict())
        write_atomic(self.out / "history.json", json.dumps([r.as_dict() for r in self.history], indent=2) + "\n")

    def _result(self) -> RunResult:
        """The finished run, once the ranks agree on every student's weights."""
        if not all(distributed.replicas_agree(self.world, s.parameters()) for s in self.students):
            raise EdgetrackError("the distributed replicas of a student ended with different weights: check that every rank ran the same code and data")
        if self.redraws:
            self.note(f"note: {self.redraws} pairs were redrawn because a frame could not be read")
        weights = {s.config.name: self.out / f"{s.config.name}.pt" for s in self.students}
        return RunResult(self.step, weights, [r.as_dict() for r in self.history])


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values())


def _non_finite_loss(students: list[SiameseModel], terms: list[dict]) -> str:
    for student, t in zip(students, terms):
        value = float(t["total"].detach())
        if not math.isfinite(value):
            return f"the loss of {student.config.name} became {value}"
    return "the loss of a student became non-finite on another process"


def _diverged(what: str, step: int, out: Path) -> TrainingDiverged:
    last = out / "last.pt"
    kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written"
    return TrainingDiverged(f"{what} at step {step}: training stopped; {kept} (lower --lr or check the data)")


def _label_unlabeled(targets: Batch, batch: dict, teacher: SiameseModel, logits, loc, grid, config: TrainConfig) -> None:
    """Targets for the teacher-labelled pairs of the batch, from the teacher's own outputs; a pair counts for the
    ground-truth losses only where the teacher is confident."""
    unlabeled = np.flatnonzero(~batch["labelled"].numpy())
    if not len(unlabeled) or loc is None:
        return
    picked = teacher_labels(teacher.config, logits[unlabeled].float().cpu().numpy(), loc[unlabeled].float().cpu().numpy(), grid)
    for row, label in zip(unlabeled, picked):
        if label is None or label[1] < config.data.teacher_confidence:
            continue
        t = build_targets(teacher.config.spec, teacher.config.geometry, label[0], target_rng(config.seed, int(batch["index"][row])), grid)
        device = targets.label.device
        targets.label[row] = torch.from_numpy(t.label.astype(np.int64)).to(device)
        targets.loc[row] = torch.from_numpy(t.loc).to(device)
        targets.loc_weight[row] = torch.from_numpy(t.loc_weight).to(device)
        targets.gt_weight[row] = 1.0
