"""benchmarks/student_recipes.py: the widths a recipe trains at under each alignment, against hand-computed ones,
and the promise of alignment "up": it trains at exactly the widths the default recipe exports."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from student_recipes import Recipe, Stage, Widths, recipes  # noqa: E402

from edgetrack.distill.models import PRESETS  # noqa: E402

#: a teacher's widths, multiples of 8 as NanoTrack's are; the unused neck always trains at one channel
TEACHER = {"block1.expand": 72, "block1.se": 24, "stage1": 16, "cls_tower.1": 112, "neck": 64}
STAGE = Stage(Widths(expand=0.75, stage=1.0, tower=0.5), steps=10)


def recipe(alignment: str, keep_widths: tuple[str, ...] = ()) -> Recipe:
    return Recipe("toy", "nanotrack-v2", Path("unused.pth"), (STAGE,), (), alignment=alignment, keep_widths=keep_widths)


def test_each_alignment_trains_at_hand_computed_widths():
    # 72 x 0.75 = 54 and 24 x 0.75 = 18; 112 x 0.5 = 56 and 16 x 1 = 16 are multiples of 8 already.
    assert recipe("widen").training_widths(STAGE, TEACHER) == {"block1.expand": 54, "block1.se": 18, "stage1": 16, "cls_tower.1": 56, "neck": 1}
    # nearest multiples of 8: 54 -> 56, 18 -> 16
    assert recipe("nearest").training_widths(STAGE, TEACHER) == {"block1.expand": 56, "block1.se": 16, "stage1": 16, "cls_tower.1": 56, "neck": 1}
    # rounded up: 54 -> 56, 18 -> 24
    assert recipe("up").training_widths(STAGE, TEACHER) == {"block1.expand": 56, "block1.se": 24, "stage1": 16, "cls_tower.1": 56, "neck": 1}


def test_export_widens_all_but_the_kept_groups():
    widths = recipe("widen").training_widths(STAGE, TEACHER)
    assert recipe("widen").exported_widths(widths)["block1.se"] == 24
    assert recipe("widen", keep_widths=("*.se",)).exported_widths(widths) == {**widths, "block1.expand": 56}
    assert recipe("up", keep_widths=("*.se",)).training_widths(STAGE, TEACHER)["block1.se"] == 18


@pytest.mark.parametrize("name", ["edgetrack-nano-m", "edgetrack-nano-s"])
def test_alignment_up_trains_the_shapes_widening_exports(name):
    widened = dataclasses.replace(recipes()[name], alignment="widen")
    up = dataclasses.replace(widened, alignment="up")
    teacher = dict(PRESETS[widened.base].widths)
    for stage in widened.stages:
        trained = widened.training_widths(stage, teacher)
        exported = widened.exported_widths(trained)
        assert exported != trained
        assert up.training_widths(stage, teacher) == exported
        assert up.exported_widths(exported) == exported


def test_an_unknown_alignment_is_refused():
    with pytest.raises(ValueError, match="alignment 'ceil' is none of widen, nearest, up"):
        recipe("ceil")
