"""Every preset of the zoo: it builds, speaks its family's outputs, describes its widths truthfully, shrinks,
and `edgetrack models` reports it with counted (not hand-written) sizes and GFLOPs."""

from __future__ import annotations

import pytest

from edgetrack.runtime.pretrained import shipped

# The torch floor needs torch; the Python 3.10 run of `make test-py310` has none (its CPU wheel is for 3.11).
pytest.importorskip("torch", reason="torch is not installed in this environment")

import json
import subprocess
import sys

import torch

from edgetrack.distill.models import PRESETS, build_model
from edgetrack.distill.models.base import check_outputs, scaled_width
from edgetrack.distill.shrink import shrink
from edgetrack.runtime.nanotrack_hyper import NANOTRACK_HYPER

TEACHERS = sorted({c.teacher for c in PRESETS.values() if c.teacher})
STUDENTS = sorted(name for name, c in PRESETS.items() if c.teacher)
# siamrpn-big is 90M parameters: building it several times would dominate the suite's time
LIGHT = [name for name in PRESETS if not name.startswith("siamrpn-big")]


def crops(config, batch=1):
    g = config.geometry
    torch.manual_seed(0)
    z = torch.rand(1, 3, g.exemplar_size, g.exemplar_size) * 255
    x = torch.rand(g.num_scales * batch, 3, g.instance_size, g.instance_size) * 255
    return z, x


@pytest.mark.parametrize("name", LIGHT)
def test_preset_outputs_match_its_geometry(name):
    config = PRESETS[name]
    model = build_model(name).eval()
    z, x = crops(config)
    with torch.no_grad():
        zf = model.template_features(z)
        outputs = model.track(x, *zf)
    check_outputs(model, outputs)
    assert len(zf) == len(config.template_outputs)
    s, g = config.geometry.score_size, config.geometry
    if config.family == "siamfc":
        assert outputs["score"].shape == (g.num_scales, 1, s, s)
    else:
        k = g.extension.num_anchors if config.family == "siamrpn" else 1
        assert outputs["cls"].shape == (1, 2 * k, s, s)
        assert outputs["loc"].shape == (1, 4 * k, s, s)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_channel_groups_describe_every_tensor(name):
    # shapes are all this needs, so the heavy teachers are built on the meta device
    with torch.device("meta" if name not in LIGHT else "cpu"):
        model = build_model(name)
    groups = model.channel_groups()
    state = model.state_dict()
    assert set(groups) == set(state)
    for key, tensor in state.items():
        assert len(groups[key]) == tensor.dim(), key
        for d, group in enumerate(groups[key]):
            if group is not None:
                assert tensor.shape[d] == model.config.widths[group], (key, d, group)
    assert {g for dims in groups.values() for g in dims if g} <= set(model.config.widths)


@pytest.mark.parametrize("teacher_name", [t for t in TEACHERS if t in LIGHT])
def test_shrinking_to_own_width_is_the_identity(teacher_name):
    teacher = build_model(teacher_name).eval()
    student = shrink(teacher, dict(teacher.config.widths))
    z, x = crops(teacher.config)
    with torch.no_grad():
        expected = teacher.track(x, *teacher.template_features(z))
        got = student.track(x, *student.template_features(z))
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


@pytest.mark.parametrize("student_name", [s for s in STUDENTS if PRESETS[s].teacher in LIGHT])
def test_shrinking_to_a_student_preset_gives_that_preset(student_name):
    config = PRESETS[student_name]
    teacher = build_model(config.teacher)
    student = shrink(teacher, config.widths, name=student_name)
    reference = build_model(student_name)
    assert student.config.widths == reference.config.widths
    assert {k: v.shape for k, v in student.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


def test_nanotrack_presets_use_the_tuned_hyper_parameters():
    for version, hyper in NANOTRACK_HYPER.items():
        assert PRESETS[f"nanotrack-{version}"].hyper == hyper


@pytest.fixture(scope="module")
def models_json():
    run = subprocess.run([sys.executable, "-m", "edgetrack.cli", "models", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return {row["name"]: row for row in json.loads(run.stdout)}


def test_models_json_schema(models_json):
    hyper_fields = {"penalty_k", "window_influence", "lr", "lost_threshold", "scale_penalty"}
    types = {
        "name": str, "family": str, "teacher": (str, type(None)), "params": int, "fp32_mb": float,
        "template_gflops": float, "search_gflops": float, "hyper": dict,
    }
    for row in models_json.values():
        # A shipped student's row adds where its model card is.
        assert set(row) == set(types) | ({"card"} if row["name"] in shipped() else set())
        for key, kind in types.items():
            assert isinstance(row[key], kind), (row["name"], key)
        assert set(row["hyper"]) == hyper_fields and all(isinstance(v, float) for v in row["hyper"].values())
        assert row["family"] in {"siamfc", "siamrpn", "nanotrack"}
        assert row["teacher"] is None or row["teacher"] in models_json


def test_models_lists_every_preset(models_json):
    assert set(models_json) == set(PRESETS) | set(shipped())
    for row in models_json.values():
        assert row["params"] > 0 and row["fp32_mb"] >= row["params"] * 4 / 1e6
        assert 0 < row["template_gflops"] < row["search_gflops"]
        assert set(row["hyper"]) >= {"penalty_k", "window_influence", "lr", "lost_threshold"}


def test_teacher_sizes_are_the_papers(models_json):
    big = models_json["siamrpn-big"]
    assert big["params"] == pytest.approx(90.4e6, rel=0.01)
    assert big["fp32_mb"] == pytest.approx(361.8, rel=0.01)
    assert models_json["siamfc-alexnet"]["params"] == pytest.approx(2.33e6, rel=0.05)


def test_models_table_is_readable():
    run = subprocess.run([sys.executable, "-m", "edgetrack.cli", "models"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "family", "teacher"]
    # a row per preset and per shipped student, and a line on each student's model card
    assert len(lines) == 1 + len(PRESETS) + 2 * len(shipped())


def test_scaled_widths_stay_multiples_of_eight_when_the_teachers_are():
    # NanoTrack v2's widths are multiples of 8; three quarters of 24 is 18, which ONNX Runtime's NCHWc kernels
    # cannot take, so it becomes 16 (18 / 8 = 2.25 rounds to 2); half of 8 is 4, kept at the least multiple, 8.
    assert scaled_width(24, 0.75) == 16
    assert scaled_width(72, 0.75) == 56
    assert scaled_width(8, 0.5) == 8
    assert scaled_width(96, 1.0) == 96
    # a width that is not a multiple (AlexNet-style or a hand-written record) is only rounded
    assert scaled_width(7, 0.5) == 4
    assert scaled_width(3, 0.1) == 1
    for name in STUDENTS:
        config, teacher = PRESETS[name], PRESETS[PRESETS[name].teacher]
        assert all(w % 8 == 0 for g, w in config.widths.items() if teacher.widths[g] % 8 == 0 and g != "neck"), name
