"""Scoring sampled students: each is shrunk from the teacher, distilled briefly with the teacher-student losses,
then tracked on held-apart validation sequences. One episode's students train together, on the same pairs, in
one run of the trainer, which is as fair a comparison as a short run allows and pays the setup once."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgetrack import defaults

from ..checkpoint import model_record
from ..config import load_config
from ..losses import LOSS_PRESETS
from ..trainer import RunSpec, run
from .space import Architecture, SearchSpace


@dataclass(frozen=True)
class ProxySettings:
    steps: int = defaults.SEARCH_PROXY_STEPS
    batch_size: int = defaults.SEARCH_PROXY_BATCH_SIZE
    #: a short run cannot spend the trainer's default 100 warm-up steps below its peak learning rate
    warmup_steps: int = 5
    #: training data specs, as ``--data`` takes them
    data: tuple[str, ...] = ("synthetic",)
    #: folders of annotated validation sequences (never trained on)
    validation: tuple[str, ...] = ()
    workers: int = 1
    seed: int = defaults.SEED


def write_record(space: SearchSpace, widths: dict[str, int], name: str, path: Path) -> Path:
    """A student as ``edgetrack distill --students`` and ``train --model`` read it: a YAML model record."""
    config = dataclasses.replace(space.config(widths, name), teacher=space.teacher.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(model_record(config), sort_keys=False))
    return path


class ProxyDistillation:
    """The search's evaluator: ``__call__(architectures, episode)`` gives their validation AUCs."""

    def __init__(self, space: SearchSpace, teacher: str, settings: ProxySettings, out: Path, device: str = "auto"):
        self.space, self.teacher, self.settings, self.out, self.device = space, teacher, settings, out, device

    def __call__(self, archs: list[Architecture], episode: int) -> list[float]:
        folder = self.out / "episodes" / f"{episode:03d}"
        # A search stopped mid-episode left this folder half made: the episode starts over.
        shutil.rmtree(folder, ignore_errors=True)
        names = [f"candidate-{a.key}" for a in archs]
        records = tuple(str(write_record(self.space, a.widths, n, folder / f"{n}.yaml")) for a, n in zip(archs, names))
        s = self.settings
        overrides = {f"loss.{k}": v for k, v in dataclasses.asdict(LOSS_PRESETS["teacher-student"]).items()}
        config = load_config(
            None,
            epochs=1,
            steps_per_epoch=s.steps,
            batch_size=s.batch_size,
            seed=s.seed,
            student_noise=0.0,
            **{
                "data.sources": list(s.data),
                "data.workers": s.workers,
                "validation.sequences": list(s.validation),
                "optim.warmup_steps": s.warmup_steps,
                **overrides,
            },
        )
        spec = RunSpec(out=folder / "run", config=config, students=records, teacher=self.teacher, device=self.device, progress=False)
        # The trainer announces every model it builds; over a search that is noise, and the log has the numbers.
        with contextlib.redirect_stdout(io.StringIO()):
            result = run(spec)
        last = result.history[-1]
        for weights in (folder / "run").glob("*.pt"):
            weights.unlink()  # a proxy student is never used again; the chosen one is distilled in full later
        return [float(last[name]["auc"]) for name in names]
