"""The run's settings: YAML reading with exact errors, the learning-rate schedule, and the teacher's labels for
unlabeled pairs, each against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch", reason="the trainer needs the train extra (torch)")
pytest.importorskip("yaml", reason="config files need the train extra (pyyaml)")

from edgetrack.distill.config import TrainConfig, load_config  # noqa: E402
from edgetrack.distill.models import preset  # noqa: E402
from edgetrack.distill.targets import build_targets  # noqa: E402
from edgetrack.distill.trainer import lr_factor, teacher_labels  # noqa: E402
from edgetrack.runtime.errors import InputError  # noqa: E402


def test_yaml_sections_fill_the_dataclasses_and_options_override_them(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\noptim:\n  lr: 0.05\n  schedule: log\ndata:\n  sources: [synthetic:10, 'unlabeled:a.mp4@0.5']\n  pairs:\n    negative: 0.3\n")
    config = load_config(path, **{"optim.lr": 0.02, "batch_size": None})
    assert config.epochs == 3 and config.optim.schedule == "log"
    assert config.optim.lr == 0.02  # the command line wins
    assert config.batch_size == TrainConfig().batch_size  # None means "not given"
    assert config.data.sources == ("synthetic:10", "unlabeled:a.mp4@0.5")
    assert config.data.pairs.negative == 0.3


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: 3\nepoch: 4\n", "unknown setting 'epoch'"),
        ("optim:\n  learning_rate: 0.1\n", "optim: unknown setting 'learning_rate'"),
        ("optim:\n  optimizer: adam\n", "optim.optimizer must be one of sgd, adamw"),
        ("[1, 2]\n", "must be a mapping"),
        ("epochs: [\n", "not valid YAML"),
    ],
)
def test_config_mistakes_are_named(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        load_config(path)


def test_learning_rate_warms_up_then_decays_to_the_final_rate():
    base = {"epochs": 1, "steps_per_epoch": 101, "optim.lr": 0.01, "optim.final_lr": 0.0001, "optim.warmup_steps": 10, "optim.warmup_factor": 0.1}
    cosine = load_config(None, **base)
    assert lr_factor(0, cosine) == pytest.approx(0.1)
    assert lr_factor(5, cosine) == pytest.approx(0.55)
    assert lr_factor(10, cosine) == pytest.approx(1.0)
    # Half-way through the decay (step 55 of 10..100) the cosine is at the mid-point of lr and final_lr.
    assert lr_factor(55, cosine) == pytest.approx((1 + 0.01) / 2)
    assert lr_factor(100, cosine) == pytest.approx(0.01)
    log = load_config(None, **base, **{"optim.schedule": "log"})
    assert lr_factor(55, log) == pytest.approx(0.1)  # geometric mid-point of 1 and 0.01
    assert lr_factor(100, log) == pytest.approx(0.01)


def test_teacher_labels_are_the_box_the_tracker_would_pick():
    config = preset("nanotrack-v3")
    g = config.geometry
    grid = config.spec.grid(g)
    box = (20.0, -12.0, 60.0, 40.0)
    targets = build_targets(config.spec, g, box, grid=grid)
    # A teacher sure of the target's points and exact in its distances.
    logits = np.where(targets.label == 1, 5.0, -5.0).astype(np.float32)
    cls = np.stack([-logits, logits])
    (label,) = teacher_labels(config, cls[None], targets.loc[None], grid)
    picked, score = label
    assert np.allclose(picked, box, atol=1e-4)
    assert score == pytest.approx(1 / (1 + math.exp(-10)))
    # SiamFC regresses no box: its unlabeled pairs get no box from the teacher.
    siamfc = preset("siamfc-alexnet")
    assert teacher_labels(siamfc, np.zeros((1, 2, 289), np.float32), np.zeros((1, 4, 289), np.float32), siamfc.spec.grid(siamfc.geometry)) == [None]
