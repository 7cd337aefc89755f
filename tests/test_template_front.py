"""NanoTrack's template front (``options["template_front"]``): the template of a student runs a frozen copy of its
teacher's first backbone layers, at the teacher's widths, instead of its own; the search path stays the student's.
Checked on the real NanoTrack v2 weights: the template is exactly the teacher's layers then the student's, the front
never trains, it survives records, progressive shrinking, refit and ONNX export."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
yaml = pytest.importorskip("yaml", reason="training needs the train extra (pyyaml)")

from conftest import DATA  # noqa: E402

from edgetrack.distill.checkpoint import load_model, model_record, save_file  # noqa: E402
from edgetrack.distill.config import TrainConfig  # noqa: E402
from edgetrack.distill.losses import ModelOutputs, dense_box_loss  # noqa: E402
from edgetrack.distill.models import PRESETS  # noqa: E402
from edgetrack.distill.shrink import refit, shrink  # noqa: E402
from edgetrack.distill.trainer import TrainingView, _shared_forward, load_teacher, make_students  # noqa: E402
from edgetrack.runtime.errors import InputError  # noqa: E402

TEACHER = f"nanotrack-v2:{DATA / 'models/nanotrack/v2/nanotrackv2.pth'}"
FRONT = {"template_front": 6}


def _widths(expand: float, tower: float) -> dict[str, int]:
    """nano-m's kind of student: narrower expansions and towers, the stem and stage outputs at v2's widths."""
    widths = {}
    for group, width in PRESETS["nanotrack-v2"].widths.items():
        factor = expand if "expand" in group or group.endswith(".se") else tower if "tower" in group else 1.0
        widths[group] = max(1, round(width * factor))
    return {**widths, "neck": 1}


@pytest.fixture(scope="module")
def teacher():
    return load_teacher(TEACHER)


@pytest.fixture(scope="module")
def crops():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 127, 127, generator=generator) * 255, torch.rand(2, 3, 255, 255, generator=generator) * 255


def test_the_template_is_the_teachers_first_layers_then_the_students(teacher, crops):
    z, x = crops
    student = shrink(teacher, _widths(0.75, 0.5), name="student", options=FRONT).eval()
    plain = shrink(teacher, _widths(0.75, 0.5), name="student").eval()
    with torch.no_grad():
        template = student.template(z)
        assert torch.equal(template, student.backbone.features[6:](teacher.backbone.features[:6](z)))
        assert not torch.allclose(template, plain.template(z), atol=1e-3)
        # the search path is the plain student's: the same template features give the same outputs
        for name, value in student.track(x, template).items():
            assert torch.equal(value, plain.track(x, template)[name]), name
    front = sum(p.numel() for p in teacher.backbone.features[:6].parameters())
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in plain.parameters()) + front
    assert front == 81_488


def test_the_front_never_trains(teacher, crops):
    student = shrink(teacher, _widths(0.75, 0.5), name="student", options=FRONT).train()
    assert not student.template_front.training and student.backbone.training
    before = {k: v.clone() for k, v in student.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.1)
    with torch.no_grad():
        them = ModelOutputs.of(teacher.config.spec, *TrainingView(teacher)(*crops))
    for _ in range(2):
        me = ModelOutputs.of(student.config.spec, *TrainingView(student)(*crops))
        optimizer.zero_grad()
        dense_box_loss(student.config.spec, me, them).mean().backward()
        optimizer.step()
    after = student.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("template_front."))
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("backbone.features.6."))


def test_records_and_progressive_shrinking_keep_the_front(teacher, crops, tmp_path):
    z, _ = crops
    stage1 = shrink(teacher, _widths(0.9, 0.75), name="student", options=FRONT).eval()
    assert model_record(stage1.config)["options"] == FRONT
    assert "options" not in model_record(shrink(teacher, _widths(0.9, 0.75)).config)
    save_file(tmp_path / "stage1" / "student.pt", {"model": model_record(stage1.config), "state_dict": stage1.state_dict()})
    with torch.no_grad():
        assert torch.equal(load_model(None, tmp_path / "stage1" / "student.pt").eval().template(z), stage1.template(z))
    record = {"base": "nanotrack-v2", "name": "student", "teacher": "nanotrack-v2", "widths": _widths(0.75, 0.5), "shrink_from": "stage1/student.pt"}
    (tmp_path / "stage2.yaml").write_text(yaml.safe_dump({**record, "options": FRONT}))
    (stage2,) = make_students((str(tmp_path / "stage2.yaml"),), teacher, TrainConfig(student_noise=0))
    for key, value in stage1.template_front.state_dict().items():
        assert torch.equal(stage2.template_front.state_dict()[key], value), key
    (tmp_path / "random.yaml").write_text(yaml.safe_dump({**record, "options": FRONT, "shrink_from": None}))
    with pytest.raises(InputError, match="student_init: shrink"):
        make_students((str(tmp_path / "random.yaml"),), teacher, TrainConfig(student_init="random"))


def test_refit_pairs_the_shared_backbone_and_skips_the_front(teacher, crops):
    with_front = shrink(teacher, _widths(0.9, 0.75), name="student", options=FRONT).eval()
    plain = shrink(teacher, _widths(0.9, 0.75), name="student").eval()
    fitted = [refit(teacher, s, [crops], _shared_forward) for s in (with_front, plain)]
    assert [layer.name for layer in fitted[0]] == [layer.name for layer in fitted[1]]
    assert fitted[0] and not any(layer.name.startswith("template_front") for layer in fitted[0])
    for key, value in plain.state_dict().items():
        assert torch.equal(with_front.state_dict()[key], value), key


def test_a_front_that_does_not_meet_the_students_widths_is_refused(teacher):
    widths = {**_widths(0.75, 0.5), "stage3": 32}
    with pytest.raises(ValueError, match="keep stage3 at the published width"):
        shrink(teacher, widths, name="student", options=FRONT)


def test_the_exported_template_graph_holds_the_front(teacher, crops, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edgetrack.deploy.export import export_model

    student = shrink(teacher, _widths(0.75, 0.5), name="student", options=FRONT).eval()
    # export_model also compares torch and ONNX Runtime on real frames, and refuses a bundle that differs
    bundle = export_model(student, tmp_path / "student.etb", parity_data=DATA / "sequences")
    session = ort.InferenceSession(str(bundle.path / "template.onnx"), providers=["CPUExecutionProvider"])
    z = crops[0][:1]
    (got,) = session.run(None, {session.get_inputs()[0].name: z.numpy()})
    with torch.no_grad():
        want = student.backbone.features[6:](teacher.backbone.features[:6](z))
    assert torch.allclose(torch.from_numpy(got), want, rtol=1e-4, atol=1e-3 * float(want.abs().max()))
