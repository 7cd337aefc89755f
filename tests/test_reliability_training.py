"""The reliability cases of training: no setting of the wrong type or out of range, no non-finite loss and no
unsafe or damaged checkpoint gets past the trainer without one line saying what to do, and a run that fails
before its first checkpoint leaves nothing behind that it did not find."""

from __future__ import annotations

import io
import math
import os
import pickle
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
pytest.importorskip("yaml", reason="training needs the train extra (pyyaml)")

from test_trainer import ENV, cli  # noqa: E402

from edgetrack.distill import checkpoint, trainer  # noqa: E402
from edgetrack.distill.config import load_config  # noqa: E402
from edgetrack.distill.trainer import RunSpec, TrainingDiverged, load_teacher, run  # noqa: E402
from edgetrack.runtime.errors import EdgetrackError, InputError  # noqa: E402

STUDENT = "nanotrack-v1-s50"


class Payload:
    """Unpickled, it would run a shell command: a weights-only load must refuse it before it runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def tiny_config(**overrides):
    """Training alone from scratch on 2 synthetic sequences, 1 pair a step in this process, no validation."""
    settings = {
        "epochs": 3,
        "steps_per_epoch": 3,
        "batch_size": 1,
        "log_every": 1,
        "student_init": "random",
        "data.sources": ["synthetic:2"],
        "data.workers": 0,
        "validation.every": 0,
        "optim.warmup_steps": 0,
        **{f"loss.{term}": 0.0 for term in ("soft", "hard", "response", "share")},
        **overrides,
    }
    return load_config(None, **settings)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    "text, message",
    [
        ('epochs: "many"\n', "config key epochs must be an integer, got 'many'"),
        ("epochs: true\n", "config key epochs must be an integer, got True"),
        ("batch_size: 2.5\n", "config key batch_size must be an integer, got 2.5"),
        ("optim:\n  lr: .nan\n", "config key optim.lr must be a finite number, got nan"),
        ("optim:\n  lr: .inf\n", "config key optim.lr must be a finite number, got inf"),
        ("optim:\n  lr: fast\n", "config key optim.lr must be a finite number, got 'fast'"),
        ("optim:\n  amp: 'no'\n", "config key optim.amp must be true or false, got 'no'"),
        ("student_init: 3\n", "config key student_init must be a string, got 3"),
        ("data:\n  sources: [synthetic, 4]\n", "config key data.sources must be a string or a list of them, got ['synthetic', 4]"),
        ("loss:\n  soft: .nan\n", "config key loss.soft must be a finite number, got nan"),
        ("data:\n  pairs:\n    augment:\n      blur: .nan\n", "config key data.pairs.augment.blur must be a finite number, got nan"),
        ("epochs: 0\n", "config key epochs must be at least 1, got 0"),
        ("steps_per_epoch: -3\n", "config key steps_per_epoch must be at least 1, got -3"),
        ("log_every: 0\n", "config key log_every must be at least 1, got 0"),
        ("data:\n  workers: -1\n", "config key data.workers must be at least 0, got -1"),
        ("optim:\n  lr: 0\n", "config key optim.lr must be a finite number above 0, got 0.0"),
        ("optim:\n  lr: -0.01\n", "config key optim.lr must be a finite number above 0, got -0.01"),
        ("optim:\n  schedule: linear\n", "config key optim.schedule must be one of cosine, log, got 'linear'"),
    ],
)
def test_a_setting_of_the_wrong_type_or_range_is_one_error_naming_its_key(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        load_config(path)
    assert str(raised.value) == message


def test_command_line_values_are_checked_like_the_file_and_numbers_take_their_field_type():
    with pytest.raises(InputError, match="config key optim.lr must be a finite number, got nan"):
        load_config(None, **{"optim.lr": math.nan})
    config = load_config(None, **{"optim.lr": 1, "optim.final_lr": 0})
    assert type(config.optim.lr) is float and type(config.optim.final_lr) is float


def test_lr_nan_on_the_command_line_is_one_line_and_trains_nothing(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(cli("train", "--model", STUDENT, "--lr", "nan", "--out", str(out), "--quiet"), capture_output=True, text=True, env=ENV)
    assert "optim.lr" in one_line_error(result)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- divergence


def nan_loss(total, logits):
    return total * math.nan


def nan_gradient(total, logits):
    """The same loss, with a gradient of NaN: sqrt's slope at 0 is infinite, and infinity times 0 is NaN."""
    return total + 0 * torch.sqrt(logits - logits.detach()).sum()


def poison_step(monkeypatch, bad_step: int, poison=nan_loss) -> None:
    """Poison the total loss of every student at step ``bad_step`` (1-based, as log.csv counts)."""
    calls = {"step": 0}
    real = trainer.student_losses

    def losses(family, config, epoch, index, outs, *args):
        if index == 0:
            calls["step"] += 1
        terms = real(family, config, epoch, index, outs, *args)
        if calls["step"] == bad_step:
            terms = {**terms, "total": poison(terms["total"], outs[index].logits)}
        return terms

    monkeypatch.setattr(trainer, "student_losses", losses)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    poison_step(monkeypatch, 7)
    with pytest.raises(TrainingDiverged) as raised:
        run(RunSpec(out=out, config=tiny_config(), students=(STUDENT,), progress=False))
    assert str(raised.value) == (
        f"the loss of {STUDENT} became nan at step 7: training stopped; the last good checkpoint is {out / 'last.pt'} "
        "(lower --lr or check the data)"
    )
    # The epoch checkpoint of step 6 stays as it was: the NaN step never reached the weights.
    saved = checkpoint.load_file(out / "last.pt")
    assert saved["step"] == 6 and saved["saved_because"] == "epoch"
    for content in (saved["students"][0], checkpoint.load_file(out / f"{STUDENT}.pt")):
        assert all(torch.isfinite(v).all() for v in content["state_dict"].values())
    # A run that failed after a checkpoint keeps its folder: it can be resumed.
    assert {"last.pt", "log.csv", "history.json"} <= {p.name for p in out.iterdir()}


def test_weights_that_diverge_under_a_finite_loss_are_never_saved(tmp_path, monkeypatch):
    # Step 6 ends epoch 2 with a finite loss and NaN weights: its checkpoint is refused, epoch 1's stays.
    out = tmp_path / "run"
    poison_step(monkeypatch, 6, nan_gradient)
    with pytest.raises(TrainingDiverged) as raised:
        run(RunSpec(out=out, config=tiny_config(), students=(STUDENT,), progress=False))
    assert str(raised.value) == (
        f"the weights of {STUDENT} became non-finite at step 6: training stopped; the last good checkpoint is {out / 'last.pt'} "
        "(lower --lr or check the data)"
    )
    saved = checkpoint.load_file(out / "last.pt")
    assert saved["step"] == 3
    assert all(torch.isfinite(v).all() for v in saved["students"][0]["state_dict"].values())


def test_a_run_that_diverges_before_its_first_checkpoint_takes_back_what_it_wrote(tmp_path, monkeypatch):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's\n")
    poison_step(monkeypatch, 2)
    config = tiny_config(**{"validation.every": 1, "validation.synthetic": 1})
    with pytest.raises(TrainingDiverged, match="at step 2: training stopped; no checkpoint was written"):
        run(RunSpec(out=out, config=config, students=(STUDENT,), progress=False))
    # validation/, log.csv and tensorboard/ were this run's; the folder and notes.txt were there before it.
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# -------------------------------------------------------------------------------------------- checkpoints


def unsafe_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Checkpoints whose unpickling would run ``Payload``: a plain pickle (protocol 2 and 4) and torch.save's zip."""
    files = {}
    for protocol in (2, 4):
        files[f"pickle-{protocol}"] = folder / f"pickle-{protocol}.pth"
        files[f"pickle-{protocol}"].write_bytes(pickle.dumps({"state_dict": Payload(marker)}, protocol=protocol))
    buffer = io.BytesIO()
    torch.save({"state_dict": Payload(marker)}, buffer)
    files["torch.save"] = folder / "zip.pth"
    files["torch.save"].write_bytes(buffer.getvalue())
    return files


def corrupt_files(folder: Path) -> dict[str, Path]:
    good = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(256)}}, good)
    contents = {
        "empty": b"",
        "truncated": good.getvalue()[:300],
        "text": b"hello, I am not a checkpoint\n",
        "garbage": bytes(range(7, 256)) * 3,
    }
    files = {}
    for name, data in contents.items():
        files[name] = folder / f"{name}.pth"
        files[name].write_bytes(data)
    return files


LOADERS = {
    "load_file": checkpoint.load_file,
    "checkpoint.load_model": lambda path: checkpoint.load_model("nanotrack-v1", path),
    "load_teacher": lambda path: load_teacher(f"nanotrack-v1:{path}"),
}


@pytest.fixture(params=sorted(LOADERS))
def loader(request):
    return LOADERS[request.param]


def test_an_unsafe_checkpoint_is_refused_in_one_line_and_its_code_never_runs(tmp_path, loader):
    marker = tmp_path / "payload-ran"
    for kind, path in unsafe_files(tmp_path, marker).items():
        with pytest.raises(InputError) as raised:
            loader(path)
        message = str(raised.value)
        assert message.startswith(f"not a safe checkpoint (weights only): {path}; "), kind
        assert "torch.save(model.state_dict()" in message and "\n" not in message
        assert not marker.exists(), kind


def test_a_damaged_checkpoint_is_one_line(tmp_path, loader):
    for kind, path in corrupt_files(tmp_path).items():
        with pytest.raises(InputError) as raised:
            loader(path)
        message = str(raised.value)
        assert message.startswith(f"{path} is not a PyTorch checkpoint (empty or corrupt): "), kind
        assert ("the file is empty" in message) == (kind == "empty")


def test_a_checkpoint_that_is_no_dict_is_one_line(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.ones(3), path)
    with pytest.raises(InputError, match="holds a Tensor, not a checkpoint"):
        checkpoint.load_model("nanotrack-v1", path)


def test_export_load_model_passes_the_error_on_unchanged(tmp_path):
    pytest.importorskip("onnx", reason="export needs the deploy extra")
    from edgetrack.deploy.export import load_model

    marker = tmp_path / "payload-ran"
    with pytest.raises(InputError, match="not a safe checkpoint"):
        load_model("nanotrack-v1", unsafe_files(tmp_path, marker)["torch.save"])
    with pytest.raises(InputError, match="is not a PyTorch checkpoint"):
        load_model("nanotrack-v1", corrupt_files(tmp_path)["empty"])
    assert not marker.exists()


def test_the_command_line_says_one_line_for_bad_checkpoints_and_leaves_no_run_folder(tmp_path):
    marker = tmp_path / "payload-ran"
    unsafe = unsafe_files(tmp_path, marker)["pickle-2"]
    empty = corrupt_files(tmp_path)["empty"]
    for bad, message in ((unsafe, "not a safe checkpoint"), (empty, "is not a PyTorch checkpoint")):
        bundle = tmp_path / "model.etb"
        result = subprocess.run(cli("export", "--model", "nanotrack-v1", "--weights", str(bad), "-o", str(bundle)), capture_output=True, text=True, env=ENV)
        assert message in one_line_error(result)
        assert not bundle.exists()
        out = tmp_path / "runs" / "distill"
        result = subprocess.run(
            cli("distill", "--teacher", f"nanotrack-v1:{bad}", "--students", STUDENT, "--out", str(out), "--quiet"), capture_output=True, text=True, env=ENV
        )
        assert message in one_line_error(result)
        assert not (tmp_path / "runs").exists()
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ leftovers


def test_a_failed_run_leaves_no_folder_it_created(tmp_path):
    out = tmp_path / "runs" / "distill" / "first"
    for teacher, students in ((f"nanotrack-v1:{tmp_path / 'missing.pth'}", (STUDENT,)), (None, ("no-such-model",))):
        with pytest.raises(InputError):
            run(RunSpec(out=out, config=tiny_config(), students=students, teacher=teacher, progress=False))
        assert not (tmp_path / "runs").exists()
    with pytest.raises(EdgetrackError, match="/nonexistent"):
        run(RunSpec(out=out, config=tiny_config(**{"data.sources": ["synthetic:2", "got10k:/nonexistent"]}), students=(STUDENT,), progress=False))
    assert not (tmp_path / "runs").exists()


def test_the_log_size_box_term_is_refused_for_a_family_without_ltrb_boxes(tmp_path):
    out = tmp_path / "runs" / "rpn"
    with pytest.raises(InputError, match="loss.dense_box_log needs boxes that are ltrb distances .* set loss.dense_box_log to 0"):
        run(RunSpec(out=out, config=tiny_config(**{"loss.dense_box_log": 1.0}), students=("siamrpn-alexnet-s25",), progress=False))
    assert not (tmp_path / "runs").exists()


def test_a_failed_run_keeps_a_folder_that_was_there_and_what_it_held(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's\n")
    with pytest.raises(InputError, match="not found"):
        run(RunSpec(out=out, config=tiny_config(), students=(STUDENT,), teacher=f"nanotrack-v1:{tmp_path / 'missing.pth'}", progress=False))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
