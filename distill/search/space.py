"""What the policy chooses: one shrink ratio per width group of the teacher, in the family's layer order.

A width group is the unit of choice because the family already ties everything that must agree: a depth-wise
conv shares its group with the conv that feeds it, a residual block's output shares its input's group, and
correlation partners share one. Any ratio per group therefore gives a valid model of the same family.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..models import build_model
from ..models.base import ModelConfig, scaled_width

#: The default discrete ratios: 0.1, 0.2, ..., 1.0 of the teacher's width.
RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 11))


def parameter_count(config: ModelConfig) -> int:
    return sum(p.numel() for p in build_model(config).parameters())


@dataclass(frozen=True)
class Architecture:
    """One sampled student: the ratio index chosen per group, the widths they give, and its size."""

    actions: tuple[int, ...]
    widths: dict[str, int]
    params: int
    #: teacher parameters / student parameters
    compression: float

    @property
    def key(self) -> str:
        """Identical widths, identical key: the cache of evaluated students is keyed by it."""
        return hashlib.sha256(json.dumps(self.widths, sort_keys=False).encode()).hexdigest()[:12]


class SearchSpace:
    """The teacher's width groups and the ratios each may take."""

    def __init__(self, teacher: ModelConfig, ratios: tuple[float, ...] = RATIOS):
        if not ratios or any(not 0 < r <= 1 for r in ratios):
            raise ValueError(f"ratios must lie in (0, 1], got {ratios}")
        self.teacher = teacher
        self.ratios = tuple(ratios)
        self.groups = list(teacher.widths)
        self.teacher_params = parameter_count(teacher)

    def widths(self, actions: tuple[int, ...]) -> dict[str, int]:
        # Whole channels, not multiples of 8: the search needs fine steps to reach its compression target; a
        # searched student is aligned after training (``shrink.widen``) like the shipped ones.
        if len(actions) != len(self.groups):
            raise ValueError(f"{self.teacher.name} has {len(self.groups)} width groups, got {len(actions)} choices")
        return {g: scaled_width(self.teacher.widths[g], self.ratios[a], multiple=1) for g, a in zip(self.groups, actions)}

    def config(self, widths: dict[str, int], name: str) -> ModelConfig:
        return self.teacher.with_widths(widths, name=name)

    def architecture(self, actions: tuple[int, ...]) -> Architecture:
        widths = self.widths(tuple(actions))
        params = parameter_count(self.config(widths, "candidate"))
        return Architecture(tuple(int(a) for a in actions), widths, params, self.teacher_params / params)

    def uniform(self, ratio: float) -> dict[str, int]:
        """Every group at the same fraction of the teacher: the hand-made baseline a search must beat."""
        return {g: scaled_width(w, ratio, multiple=1) for g, w in self.teacher.widths.items()}

    def uniform_ratio(self, params: float, tolerance: float = 0.005) -> float:
        """The ratio whose uniform shrink has about ``params`` parameters (bisection; counts grow with the ratio)."""
        low, high = 0.01, 1.0
        for _ in range(40):
            mid = (low + high) / 2
            count = parameter_count(self.config(self.uniform(mid), "uniform"))
            if abs(count - params) <= tolerance * params:
                break
            low, high = (mid, high) if count < params else (low, mid)
        return mid
