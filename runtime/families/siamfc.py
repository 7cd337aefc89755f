"""siamfc: one score map per search crop, no box regression; the target is searched at a few scales, and the
best scale's upsampled response gives the new centre (SiamFC, got10k's implementation). The scale pyramid and
the response upsampling are the family's geometry extension."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import geometry as geo
from ..bundle import BundleMeta, Geometry, GeometryExtension, _float, _int
from ..crops import TargetState, search_side
from . import register
from .base import Candidate, FamilySpec, Locator


@dataclass(frozen=True)
class ScalePyramid(GeometryExtension):
    """The search pyramid, the upsampling of its score maps and the penalty on changing scale. Stored as
    ``num_scales``, ``scale_step`` and ``upsample`` in the bundle's ``geometry``, ``scale_penalty`` in its ``hyper``."""

    #: search crops per frame, at sides ``scale_step ** k`` for ``k`` in ``-(n // 2) .. n // 2``
    num_scales: int
    scale_step: float
    #: the bicubic upsampling factor of each score map
    upsample: int
    #: the multiplier of the peaks of every scale but 1: changing scale must beat staying put by more than it
    scale_penalty: float

    @property
    def pyramid(self) -> tuple[int, float]:
        return self.num_scales, self.scale_step

    @classmethod
    def read(cls, geometry: Mapping[str, Any], hyper: Mapping[str, Any]) -> ScalePyramid:
        return cls(
            num_scales=_int(geometry.get("num_scales", 1), "geometry.num_scales", 1, 16),
            scale_step=_float(geometry.get("scale_step", 1.0), "geometry.scale_step", 0.0, 10.0, above=True),
            upsample=_int(geometry.get("upsample", 1), "geometry.upsample", 1, 64),
            scale_penalty=_float(hyper.get("scale_penalty", 1.0), "hyper.scale_penalty", 0.0, 1.0, above=True),
        )

    def geometry_json(self) -> dict[str, Any]:
        return {"num_scales": self.num_scales, "scale_step": self.scale_step, "upsample": self.upsample}

    def hyper_json(self) -> dict[str, Any]:
        return {"scale_penalty": self.scale_penalty}


@dataclass(frozen=True, kw_only=True)
class ScoreMaps(FamilySpec):
    """A score map per search crop, read through a sigmoid; the tracker moves to the peak of the best scale."""

    def grid(self, g: Geometry) -> np.ndarray:
        return geo.point_grid(g.score_size, g.stride)

    def window(self, g: Geometry) -> np.ndarray:
        """The window over the upsampled response, normalised to sum 1 as the response it is blended with."""
        size = g.score_size * g.extension.upsample
        window = geo.cosine_window(size)
        return (window / window.sum()).reshape(size, -1)

    def locator(self, meta: BundleMeta) -> Locator:
        return PyramidLocator(self, meta)


class PyramidLocator(Locator):
    """got10k's SiamFC step: the best scale's peak, after the scale penalty, moves the centre; the size follows
    that scale, smoothed by ``lr``. The score is the sigmoid of the best scale's raw peak, the contrast that peak
    minus the mean of the best scale's (upsampled) response."""

    def __init__(self, spec: ScoreMaps, meta: BundleMeta):
        g = meta.geometry
        self._output, self._geometry, self._hyper, self._pyramid = spec.cls_output, g, meta.hyper, g.extension
        self._window = spec.window(g)
        self.scales = geo.siamfc_scale_factors(g.num_scales, g.scale_step)
        size = g.score_size * self._pyramid.upsample
        self._responses = np.empty((g.num_scales, size, size), np.float32)

    def locate(self, outputs: Mapping[str, np.ndarray], state: TargetState, windowed: bool = True) -> Candidate:
        g, hyper, pyramid = self._geometry, self._hyper, self._pyramid
        n, middle = pyramid.num_scales, pyramid.num_scales // 2
        maps = outputs[self._output]
        for i in range(n):
            geo.upsample_response(maps[i, 0], pyramid.upsample, out=self._responses[i])
        up = self._responses.shape[1]
        peaks = self._responses.reshape(n, -1).max(axis=1)
        peaks = np.where(np.arange(n) == middle, peaks, peaks * pyramid.scale_penalty)
        best_scale = int(np.argmax(peaks))
        response = self._responses[best_scale]
        raw_peak = float(response.max())
        contrast = raw_peak - float(response.mean())
        response = response - response.min()
        response /= response.sum() + 1e-16
        if windowed:
            response = geo.apply_window(response, self._window, hyper.window_influence)
        row, col = np.unravel_index(int(np.argmax(response)), response.shape)
        dx, dy = geo.response_displacement(int(row), int(col), up, g.stride, pyramid.upsample)
        frame_per_crop = search_side(state.w, state.h, g) * self.scales[best_scale] / g.instance_size
        size_change = geo.smooth(1.0, float(self.scales[best_scale]), hyper.lr)
        moved = (state.cx + dx * frame_per_crop, state.cy + dy * frame_per_crop, state.w * size_change, state.h * size_change)
        penalty = 1.0 if best_scale == middle else pyramid.scale_penalty
        return Candidate(moved, float(1.0 / (1.0 + np.exp(-raw_peak))), penalty, contrast)


SIAMFC = register(ScoreMaps(name="siamfc", cls_output="score", loc_output=None, single_logit=True, targets="score-map", extension=ScalePyramid))
