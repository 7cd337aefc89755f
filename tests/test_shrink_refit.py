"""Refitting a shrunk NanoTrack v2 (``shrink.refit``, ``shrink_refit`` in a run): on real pairs of ``train/`` the
refitted student is closer to its teacher than the sliced one, on pairs it was not refitted on, and a run that asks
for it refits once, before its first step."""

from __future__ import annotations

import csv
import dataclasses

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
yaml = pytest.importorskip("yaml", reason="training needs the train extra (pyyaml)")

import numpy as np  # noqa: E402
from conftest import DATA  # noqa: E402

from edgetrack.distill.config import load_config  # noqa: E402
from edgetrack.distill.data.pairs import DataSource, PairConfig, PairSampler  # noqa: E402
from edgetrack.distill.data.sequence import ImageSequence  # noqa: E402
from edgetrack.distill.losses import LOSS_PRESETS, ModelOutputs, dense_box_loss, soft_kl  # noqa: E402
from edgetrack.distill.models import PRESETS  # noqa: E402
from edgetrack.distill.shrink import refit, shrink  # noqa: E402
from edgetrack.distill.trainer import PairDataset, RunSpec, TrainingView, load_teacher, run  # noqa: E402
from edgetrack.runtime.datasets import load_dataset  # noqa: E402

TEACHER = f"nanotrack-v2:{DATA / 'models/nanotrack/v2/nanotrackv2.pth'}"


def _stage1_widths() -> dict[str, int]:
    """edgetrack-nano-m's first stage: expansions and stage outputs at 90%, towers at 75%, the unused neck at 1."""
    widths = {}
    for group, width in PRESETS["nanotrack-v2"].widths.items():
        factor = 0.9 if group.startswith(("stage", "stem", "block")) else 0.75 if "tower" in group else 1.0
        widths[group] = max(1, round(width * factor))
    return {**widths, "neck": 1}


def _pairs(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    sources = [DataSource(s.name, [ImageSequence(s.name, s.frame_paths, s.groundtruth)]) for s in load_dataset(DATA / "train").sequences]
    config = PRESETS["nanotrack-v2"]
    dataset = PairDataset(PairSampler(sources, config.geometry, PairConfig(negative=0.0), seed), config, seed)
    items = [dataset[i] for i in range(count)]
    return tuple(torch.from_numpy(np.stack([item[k] for item in items])) for k in ("z", "x"))


def _distance(student, teacher, pair) -> tuple[float, float]:
    with torch.no_grad():
        me, them = (ModelOutputs.of(student.config.spec, *TrainingView(m)(*pair)) for m in (student, teacher))
        return float(soft_kl(me.logits, them.logits, 2.0).mean()), float(dense_box_loss(student.config.spec, me, them).mean())


def test_a_refitted_student_is_closer_to_its_teacher_on_unseen_pairs():
    torch.manual_seed(0)
    teacher = load_teacher(TEACHER)
    sliced = shrink(teacher, _stage1_widths()).eval()
    refitted = shrink(teacher, _stage1_widths()).eval()
    calibration = [_pairs(seed, 16) for seed in (0, 1)]
    layers = refit(teacher, refitted, calibration, lambda model, pair: TrainingView(model)(*pair))
    # every expansion's projection and squeeze-excite, the next block's expansion, the head's 1x1s
    assert len(layers) > 20 and all(r.inputs < r.parent_inputs for r in layers)
    assert all(r.error_after <= r.error_before for r in layers), [r for r in layers if r.error_after > r.error_before]
    unseen = _pairs(2, 16)
    (kl_sliced, box_sliced), (kl_refit, box_refit) = _distance(sliced, teacher, unseen), _distance(refitted, teacher, unseen)
    assert kl_refit < 0.5 * kl_sliced and box_refit < box_sliced, (kl_sliced, kl_refit, box_sliced, box_refit)


def _one_step(out, record, refit_batches: int, notes: list[str]) -> dict[str, str]:
    losses = {f"loss.{k}": v for k, v in dataclasses.asdict(LOSS_PRESETS["teacher-only"]).items()}
    config = load_config(
        None, epochs=1, steps_per_epoch=1, batch_size=8, log_every=1, batchnorm="frozen", batchnorm_calibration=0,
        shrink_refit=refit_batches, **{"data.sources": [f"sequences:{DATA / 'train'}"], "validation.every": 0, **losses},
    )
    run(RunSpec(out=out, config=config, students=(record,), teacher=TEACHER, progress=False, note=notes.append))
    with open(out / "log.csv", newline="") as f:
        return next(csv.DictReader(f))


def test_a_run_refits_its_shrunk_student_before_the_first_step(tmp_path):
    record = tmp_path / "stage1.yaml"
    record.write_text(yaml.safe_dump({"base": "nanotrack-v2", "name": "s1", "teacher": "nanotrack-v2", "widths": _stage1_widths()}))
    notes, plain_notes = [], []
    refitted = _one_step(tmp_path / "refit", str(record), 2, notes)
    sliced = _one_step(tmp_path / "sliced", str(record), 0, plain_notes)
    assert any("pruned layers refitted to nanotrack-v2 on 16 pairs" in n for n in notes), notes
    assert not any("refitted" in n for n in plain_notes)
    # the first step's pairs are among the refit's own: the refitted student starts far closer to the teacher
    assert float(refitted["soft"]) < 0.5 * float(sliced["soft"]), (refitted, sliced)
