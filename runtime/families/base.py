"""What a model family is: its spec (outputs, grid, window, geometry extension, how training treats it) and the
``locate`` step the tracker runs on each frame's search outputs; and the proposal step that the families scoring
a box at every location (points or anchors) share.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import geometry as geo
from ..bundle import BundleMeta, Geometry, GeometryExtension
from ..crops import TargetState, search_side


@dataclass(frozen=True)
class Candidate:
    """Where ``locate`` puts the target in one frame: its centre and size ``cx, cy, w, h`` in frame pixels (before
    clipping to the frame), the raw score of the chosen location, the penalty that location was weighed with, and
    how far the score map's peak stands out of it (``contrast``: the peak logit minus the map's mean logit, the
    input of the lost-target signal, ``runtime.lost_signal``)."""

    box: tuple[float, float, float, float]
    score: float
    penalty: float
    contrast: float


class Locator(abc.ABC):
    """A family's tracking step for one bundle, holding what the bundle fixes (grid, window, buffers) once."""

    #: the search crops of a frame, as multiples of the search region's side: one per batch entry of the search model
    scales: Sequence[float]

    @abc.abstractmethod
    def locate(self, outputs: Mapping[str, np.ndarray], state: TargetState, windowed: bool = True) -> Candidate:
        """The target's new place from the search model's ``outputs`` on crops around the current ``state``.

        ``windowed=False`` leaves the cosine window out: re-detection (``runtime.long_term``) scans crops where the
        target may sit anywhere, not near their centre."""


@dataclass(frozen=True, kw_only=True)
class FamilySpec(abc.ABC):
    """A model family as the runtime and training see it; ``families.register`` makes it known by ``name``.

    The search model outputs ``cls_output`` and, where the family regresses a box, ``loc_output``. Flattened as
    the tracker reads them, ``cls`` is a background/foreground logit pair per location (``(2, N)``), or one logit
    per location with ``single_logit`` (a score map, read through a sigmoid), and ``loc`` is ``(4, N)``; location
    ``i`` sits at ``grid(g)[i]``. ``targets`` and ``box_loss`` name how training labels the grid and which loss
    trains the box (``edgetrack.distill.targets.ASSIGNMENTS``, ``edgetrack.distill.losses.BOX_LOSSES``).
    """

    name: str
    cls_output: str
    loc_output: str | None
    single_logit: bool = False
    targets: str
    box_loss: str | None = None
    #: the type of ``Geometry.extension`` in this family's bundles and models
    extension: type[GeometryExtension] = GeometryExtension

    @property
    def outputs(self) -> tuple[str, ...]:
        """What the search model outputs, in the order an export writes them."""
        return (self.cls_output,) if self.loc_output is None else (self.cls_output, self.loc_output)

    @abc.abstractmethod
    def grid(self, g: Geometry) -> np.ndarray:
        """Where each output location sits, in the order the tracker flattens the outputs: ``(N, 2)`` points or
        ``(N, 4)`` anchors ``cx, cy, w, h``, offsets from the search-crop centre in crop pixels."""

    @abc.abstractmethod
    def window(self, g: Geometry) -> np.ndarray:
        """The cosine window the tracker blends its scores with."""

    @abc.abstractmethod
    def locator(self, meta: BundleMeta) -> Locator:
        """The tracking step for the bundle ``meta`` describes."""


@dataclass(frozen=True, kw_only=True)
class ProposalFamily(FamilySpec):
    """A family that scores and regresses a box at every location (points or anchors): the tracker takes the
    location whose score, times the pysot scale/ratio penalty, blended with the cosine window, is highest."""

    cls_output: str = "cls"
    loc_output: str | None = "loc"

    @abc.abstractmethod
    def decode(self, loc: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(4, N)`` regression at ``N`` locations of ``grid`` -> their boxes' ``cx, cy, w, h`` in search-crop
        pixels, the centre as an offset from the crop centre."""

    def locator(self, meta: BundleMeta) -> Locator:
        return ProposalLocator(self, meta)


class ProposalLocator(Locator):
    """The pysot proposal step: one search crop; the size is smoothed by ``penalty * score * lr``, the centre
    taken whole."""

    scales = (1.0,)

    def __init__(self, spec: ProposalFamily, meta: BundleMeta):
        self._spec, self._geometry, self._hyper = spec, meta.geometry, meta.hyper
        self._grid = spec.grid(meta.geometry)
        self._window = spec.window(meta.geometry)
        self._logits = np.empty(len(self._grid), np.float32)

    def locate(self, outputs: Mapping[str, np.ndarray], state: TargetState, windowed: bool = True) -> Candidate:
        g, hyper, spec = self._geometry, self._hyper, self._spec
        w, h = state.w, state.h
        scale = g.instance_size / search_side(w, h, g)  # search-crop pixels per frame pixel
        # An untrained or badly scaled model can overflow exp(): inf gives the right limits (a score of 0 or 1),
        # and a box of infinite size gets no chance (its NaN penalty becomes 0) instead of a warning per frame.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            cls = outputs[spec.cls_output].reshape(2, -1)
            scores = geo.two_way_softmax(cls)
            pcx, pcy, pw, ph = spec.decode(outputs[spec.loc_output].reshape(4, -1), self._grid)
            # fmax drops NaN for 0 (a penalty is never negative); ten times cheaper than nan_to_num
            penalty = geo.size_penalty(pw, ph, w * scale, h * scale, hyper.penalty_k)
            np.fmax(penalty, 0.0, out=penalty)
            contrast = float(np.subtract(cls[1], cls[0], out=self._logits).max() - self._logits.mean())
        weighed = penalty * scores
        if windowed:
            weighed = geo.apply_window(weighed, self._window, hyper.window_influence)
        best = int(np.argmax(weighed))

        lr = float(penalty[best] * scores[best]) * hyper.lr
        cx = state.cx + float(pcx[best]) / scale
        cy = state.cy + float(pcy[best]) / scale
        size = geo.smooth(w, float(pw[best]) / scale, lr), geo.smooth(h, float(ph[best]) / scale, lr)
        return Candidate((cx, cy, *size), float(scores[best]), float(penalty[best]), contrast)
