"""OTB's spatial robustness evaluation (SRE, Wu et al., "Online Object Tracking: A Benchmark", CVPR 2013): the
same sequences tracked again from first boxes that are shifted or scaled, as a different annotator might have drawn
them. OTB uses 12 perturbations: the centre moved by 10% of the box's width and height in the 4 directions and to
the 4 corners, and the box scaled by 0.8, 0.9, 1.1 and 1.2 about its centre. ``magnitude`` scales them all (1: OTB's;
0.4: shifts of 4% and scales 0.92 to 1.08, the size of annotation noise). Unlike OTB's toolkit, the boxes are not
rounded to whole pixels.

Averaged over the starts, a comparison of two trackers no longer rests on one first box per sequence: a one-pass
score can move by a hundredth between starts (benchmarks/README.md, "nano-m shipped now").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: OTB's shift, as a fraction of the box's width and height
SHIFT = 0.1
#: OTB's scales
SCALES = (0.8, 0.9, 1.1, 1.2)
#: OTB's shift directions: (name, x sign, y sign), y down
DIRECTIONS = (
    ("left", -1, 0),
    ("right", 1, 0),
    ("up", 0, -1),
    ("down", 0, 1),
    ("top-left", -1, -1),
    ("top-right", 1, -1),
    ("bottom-left", -1, 1),
    ("bottom-right", 1, 1),
)


@dataclass(frozen=True)
class StartPerturbation:
    """One first box: the ground truth's centre moved by ``shift_x`` of its width and ``shift_y`` of its height,
    then the box scaled by ``scale`` about the new centre."""

    name: str
    shift_x: float = 0.0
    shift_y: float = 0.0
    scale: float = 1.0

    def apply(self, box: np.ndarray) -> np.ndarray:
        """The perturbed ``x, y, w, h`` box."""
        x, y, w, h = (float(v) for v in box)
        cx, cy = x + w / 2 + self.shift_x * w, y + h / 2 + self.shift_y * h
        w, h = w * self.scale, h * self.scale
        return np.array([cx - w / 2, cy - h / 2, w, h])


#: the ground truth itself, the one start of the one-pass evaluation
GROUND_TRUTH = StartPerturbation("ground-truth")


def sre_starts(magnitude: float = 1.0) -> tuple[StartPerturbation, ...]:
    """The ground truth, then OTB's 12 perturbations at ``magnitude`` times their size."""
    if not magnitude > 0:
        raise ValueError(f"the SRE magnitude must be above 0 (1 is OTB's), not {magnitude}")
    shifts = tuple(StartPerturbation(name, dx * SHIFT * magnitude, dy * SHIFT * magnitude) for name, dx, dy in DIRECTIONS)
    scales = tuple(StartPerturbation(f"scale-{s:g}", scale=1 + magnitude * (s - 1)) for s in SCALES)
    return (GROUND_TRUTH, *shifts, *scales)
