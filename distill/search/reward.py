"""The search's reward: small and accurate, R = C (2 - C) * A_student / A_teacher (N2N learning's form),
with C = 1 - params_student / params_teacher, and a penalty for missing the compression target."""

from __future__ import annotations

from dataclasses import dataclass

from edgetrack import defaults


@dataclass(frozen=True)
class RewardConfig:
    #: teacher parameters / student parameters wanted
    target_compression: float = defaults.SEARCH_TARGET_COMPRESSION
    #: a relative miss of the target up to this costs nothing
    tolerance: float = defaults.SEARCH_TOLERANCE
    #: reward lost per unit of relative miss beyond the tolerance
    penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.target_compression <= 1:
            raise ValueError(f"the target compression must be above 1 (teacher params / student params), got {self.target_compression}")


def target_miss(compression: float, config: RewardConfig) -> float:
    """How far a student's compression is from the target, relative to it: 0.25 for 6x against 8x."""
    return abs(compression / config.target_compression - 1.0)


def reward(student_params: int, teacher_params: int, student_auc: float, teacher_auc: float, config: RewardConfig) -> float:
    c = 1.0 - student_params / teacher_params
    value = c * (2.0 - c) * student_auc / teacher_auc
    miss = target_miss(teacher_params / student_params, config)
    if miss > config.tolerance:
        value -= config.penalty * (miss - config.tolerance)
    return value
