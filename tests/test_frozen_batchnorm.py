"""Frozen BatchNorm while distilling (``batchnorm: frozen``): the losses score the function that inference runs.

Known answers: a full-width copy of the real NanoTrack v2 has exactly no teacher-student loss with frozen
BatchNorm, while batch statistics alone give it a large one; frozen statistics never move while training; and
validation leaves every module in the mode it found it in.
"""

from __future__ import annotations

import csv
import dataclasses

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
yaml = pytest.importorskip("yaml", reason="training needs the train extra (pyyaml)")

from conftest import DATA  # noqa: E402

from edgetrack.distill.config import load_config  # noqa: E402
from edgetrack.distill.losses import LOSS_PRESETS  # noqa: E402
from edgetrack.distill.models import PRESETS  # noqa: E402
from edgetrack.distill.trainer import RunSpec, freeze_batchnorm, load_teacher, run  # noqa: E402
from edgetrack.distill.validate import validate, validation_sequences  # noqa: E402
from edgetrack.runtime.errors import InputError  # noqa: E402

TEACHER = f"nanotrack-v2:{DATA / 'models/nanotrack/v2/nanotrackv2.pth'}"
TEACHER_TERMS = ("soft", "dense_box", "response")


@pytest.fixture(scope="module")
def copy_record(tmp_path_factory):
    """A student record at NanoTrack v2's own widths (the unused neck at 1 channel): shrinking keeps every weight."""
    record = tmp_path_factory.mktemp("record") / "copy.yaml"
    widths = {**PRESETS["nanotrack-v2"].widths, "neck": 1}
    record.write_text(yaml.safe_dump({"base": "nanotrack-v2", "name": "copy", "teacher": "nanotrack-v2", "widths": widths}))
    return str(record)


def distil(out, record, steps: int, **overrides):
    losses = {f"loss.{k}": v for k, v in dataclasses.asdict(LOSS_PRESETS["teacher-only"]).items()}
    config = load_config(
        None, epochs=1, steps_per_epoch=steps, batch_size=4, log_every=1,
        **{"data.sources": ["synthetic:4"], "validation.every": 0, **losses, **overrides},
    )
    run(RunSpec(out=out, config=config, students=(record,), teacher=TEACHER, progress=False))
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_copy_of_the_teacher_has_no_teacher_loss_only_with_frozen_batchnorm(tmp_path, copy_record):
    frozen = distil(tmp_path / "frozen", copy_record, 1, batchnorm="frozen", batchnorm_calibration=0)
    assert all(float(frozen[0][term]) == pytest.approx(0.0, abs=1e-5) for term in TEACHER_TERMS), frozen[0]
    # The same weights normalised by each batch's statistics answer differently from the teacher.
    batch = distil(tmp_path / "batch", copy_record, 1, batchnorm="batch")
    assert float(batch[0]["response"]) > 0.05 and float(batch[0]["soft"]) > 0.005, batch[0]


def running_statistics(out) -> dict:
    state = torch.load(out / "last.pt", weights_only=True)["students"][0]["state_dict"]
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_frozen_statistics_are_re_estimated_once_and_never_move(tmp_path, copy_record):
    one = running_statistics(_run_steps(tmp_path / "one", copy_record, 1, "frozen"))
    three = running_statistics(_run_steps(tmp_path / "three", copy_record, 3, "frozen"))
    assert one and all(torch.equal(one[k], three[k]) for k in one)
    # Re-estimated on the training pairs: no longer the teacher's (the neck is never run: NanoTrack v2 skips it).
    teacher = load_teacher(TEACHER).state_dict()
    variances = {k: v for k, v in one.items() if k.endswith("running_var") and not k.startswith("neck.")}
    assert variances and not any(torch.allclose(value, teacher[key]) for key, value in variances.items())
    # With batch statistics, each step moves them.
    moving = running_statistics(_run_steps(tmp_path / "moving", copy_record, 1, "batch"))
    moved = running_statistics(_run_steps(tmp_path / "moved", copy_record, 3, "batch"))
    assert any(not torch.equal(moving[k], moved[k]) for k in moving)


def _run_steps(out, record, steps: int, mode: str):
    distil(out, record, steps, batchnorm=mode, batchnorm_calibration=2)
    return out


def test_validation_restores_each_modules_mode(copy_record):
    model = load_teacher(TEACHER).train()
    freeze_batchnorm(model)
    modes = {name: m.training for name, m in model.named_modules()}
    assert not all(modes.values()) and any(modes.values())
    validate(model, validation_sequences([DATA / "sequences" / "dat"]))
    assert {name: m.training for name, m in model.named_modules()} == modes


def test_an_unknown_batchnorm_mode_is_named():
    with pytest.raises(InputError, match="batchnorm must be one of batch, frozen"):
        load_config(None, batchnorm="fixed")


def test_a_stopped_frozen_run_resumes_exactly(tmp_path):
    """SIGTERM mid-run, then --resume: the statistics are not re-estimated again, and the run ends with the weights
    (running statistics included) of a run that never stopped."""
    import signal
    import subprocess
    import time

    from test_trainer import ENV, SMALL_RUN, cli, run_ok, steps_logged

    def args(out):
        config = out.parent / f"{out.name}.yaml"
        config.write_text("log_every: 1\nbatchnorm: frozen\nbatchnorm_calibration: 2\nvalidation:\n  every: 0\n")
        return cli("distill", "--teacher", TEACHER, "--students", "nanotrack-v2-s50", "--losses", "teacher-only", "--data", "synthetic:6", "--config", str(config), "--out", str(out), *SMALL_RUN)

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert "BatchNorm statistics re-estimated on 4 pairs" in run_ok(args(straight)).stdout
    process = subprocess.Popen(
        args(stopped), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        preexec_fn=lambda: (signal.signal(signal.SIGTERM, signal.SIG_DFL), signal.signal(signal.SIGINT, signal.SIG_DFL)),
    )
    deadline = time.monotonic() + 120
    while steps_logged(stopped) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert 3 <= torch.load(stopped / "last.pt", weights_only=True)["step"] < 24
    resumed = run_ok(args(stopped) + ["--resume"])
    assert "re-estimated" not in resumed.stdout
    final = torch.load(stopped / "last.pt", weights_only=True)["students"][0]["state_dict"]
    reference = torch.load(straight / "last.pt", weights_only=True)["students"][0]["state_dict"]
    for key, tensor in reference.items():
        assert torch.equal(final[key], tensor), key
