"""How closely a student matches its teacher on the sequences it was distilled on, and on the benchmark's.

For every sequence of ``$EDGETRACK_DATA/train`` and ``$EDGETRACK_DATA/benchmark`` this draws ``--pairs`` positive
pairs with the training sampler (seed 0, the default augmentation) and reports the student's teacher-only loss
terms against the teacher on them: the soft-label KL at T = 2, the dense box loss (1 - IoU), the log-size box term
and the response loss. Nothing is trained: the benchmark's frames are only looked at, as ``edgetrack eval`` does.
A student that matches the teacher on ``train/`` but not on the benchmark has learnt the teacher's function only
where it was shown it.

    .venv/bin/python benchmarks/distill_gap.py runs/pretrained/edgetrack-nano-m/stage3/edgetrack-nano-m.pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from edgetrack.deploy.export import load_model
from edgetrack.distill.data.pairs import DataSource, PairConfig, PairSampler
from edgetrack.distill.data.sequence import ImageSequence
from edgetrack.distill.losses import ModelOutputs, dense_box_log_loss, dense_box_loss, response_loss, soft_kl
from edgetrack.distill.trainer import PairDataset, TrainingView, load_teacher
from edgetrack.runtime.datasets import load_dataset

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
TERMS = ("soft", "dense_box", "dense_box_log", "response")


def sequence_terms(student, teacher, sequence, pairs: int) -> dict[str, float]:
    """The mean teacher-only terms of ``student`` against ``teacher`` on ``pairs`` positive pairs of one sequence."""
    config = student.config
    source = DataSource(sequence.name, [ImageSequence(sequence.name, sequence.frame_paths, sequence.groundtruth)])
    dataset = PairDataset(PairSampler([source], config.geometry, PairConfig(negative=0.0), 0), config, 0)
    items = [dataset[i] for i in range(pairs)]
    z, x = (torch.from_numpy(np.stack([item[k] for item in items])) for k in ("z", "x"))
    with torch.no_grad():
        me, them = (ModelOutputs.of(config.spec, *TrainingView(model)(z, x)) for model in (student, teacher))
        values = (
            soft_kl(me.logits, them.logits, 2.0),
            dense_box_loss(config.spec, me, them),
            dense_box_log_loss(me, them),
            response_loss(me.features, them.features),
        )
    return {term: float(value.mean()) for term, value in zip(TERMS, values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student", type=Path, help="a student's weights (NAME.pt of a distill run folder)")
    parser.add_argument("--teacher", default=f"nanotrack-v2:{DATA / 'models' / 'nanotrack' / 'v2' / 'nanotrackv2.pth'}")
    parser.add_argument("--pairs", type=int, default=64, help="pairs drawn from each sequence")
    args = parser.parse_args()
    torch.set_num_threads(1)
    student, teacher = load_model(None, args.student).eval(), load_teacher(args.teacher)
    print("| folder | sequence | " + " | ".join(TERMS) + " |\n|---|---|" + "---|" * len(TERMS))
    for folder in ("train", "benchmark"):
        rows = []
        for sequence in load_dataset(DATA / folder).sequences:
            rows.append(sequence_terms(student, teacher, sequence, args.pairs))
            print(f"| {folder} | {sequence.name} | " + " | ".join(f"{rows[-1][t]:.4f}" for t in TERMS) + " |", flush=True)
        print(f"| {folder} | **mean** | " + " | ".join(f"{np.mean([r[t] for r in rows]):.4f}" for t in TERMS) + " |", flush=True)


if __name__ == "__main__":
    main()
