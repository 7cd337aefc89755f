"""Progressive shrinking: a student's model record may name the weights it is shrunk from (``shrink_from``), so
each stage starts from the previous stage's student instead of the teacher, and keeps the zoo teacher's lineage."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from edgetrack.distill.checkpoint import model_record, save_file  # noqa: E402
from edgetrack.distill.config import TrainConfig  # noqa: E402
from edgetrack.distill.models import build_model  # noqa: E402
from edgetrack.distill.shrink import shrink  # noqa: E402
from edgetrack.distill.trainer import make_students  # noqa: E402
from edgetrack.runtime.errors import InputError  # noqa: E402


def half(widths, factor):
    return {group: max(1, round(width * factor)) for group, width in widths.items()}


def test_a_stage_is_shrunk_from_the_previous_stage(tmp_path):
    torch.manual_seed(0)
    teacher = build_model("nanotrack-v1").eval()
    stage1 = shrink(teacher, half(teacher.config.widths, 0.8), name="student")
    save_file(tmp_path / "stage1" / "student.pt", {"model": model_record(stage1.config), "state_dict": stage1.state_dict()})
    widths = half(teacher.config.widths, 0.5)
    record = {"base": "nanotrack-v1", "name": "student", "teacher": "nanotrack-v1", "widths": widths, "shrink_from": "stage1/student.pt"}
    (tmp_path / "stage2.yaml").write_text(yaml.safe_dump(record))
    (student,) = make_students((str(tmp_path / "stage2.yaml"),), teacher, TrainConfig(student_noise=0))
    expected = shrink(stage1, widths, name="student")
    assert student.config.widths == expected.config.widths and student.config.teacher == "nanotrack-v1"
    for key, value in expected.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key
    from_teacher = shrink(teacher, widths, name="student")
    assert any(not torch.equal(from_teacher.state_dict()[k], v) for k, v in expected.state_dict().items())


def test_a_missing_source_is_one_line(tmp_path):
    teacher = build_model("nanotrack-v1").eval()
    record = {"base": "nanotrack-v1", "name": "s", "widths": half(teacher.config.widths, 0.5), "shrink_from": "nowhere.pt"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(record))
    with pytest.raises(InputError, match="nowhere.pt not found"):
        make_students((str(tmp_path / "s.yaml"),), teacher, TrainConfig())
