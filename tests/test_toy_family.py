"""A fourth family made in this file alone: a spec registered with the runtime and a tiny torch model registered
with the zoo go through a training step, export, the bundle reader and the tracker, with no other module edited."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the toy family's model needs the train extra (torch)")
pytest.importorskip("onnx", reason="export needs the deploy extra (onnx)")
pytest.importorskip("yaml", reason="training needs the train extra (pyyaml)")

from torch import nn  # noqa: E402

import synthetic  # noqa: E402
from edgetrack.deploy.export import export_model  # noqa: E402
from edgetrack.distill import checkpoint, models  # noqa: E402
from edgetrack.distill.config import load_config  # noqa: E402
from edgetrack.distill.models import ModelConfig, SiameseModel, register_model  # noqa: E402
from edgetrack.distill.trainer import RunSpec, run  # noqa: E402
from edgetrack.runtime import geometry as geo  # noqa: E402
from edgetrack.runtime.backends import open_backend  # noqa: E402
from edgetrack.runtime.bundle import METADATA_FILE, Geometry, GeometryExtension, Hyper, load_bundle  # noqa: E402
from edgetrack.runtime.crops import TargetState, search_side  # noqa: E402
from edgetrack.runtime.errors import BundleError  # noqa: E402
from edgetrack.runtime.families import family, names, register  # noqa: E402
from edgetrack.runtime.families.base import ProposalFamily  # noqa: E402
from edgetrack.runtime.tracker import SiameseTracker  # noqa: E402

STRIDE = 8


@dataclass(frozen=True)
class WindowPower(GeometryExtension):
    """The toy's own geometry: its cosine window raised to ``power``, stored as ``window_power`` in ``geometry``."""

    power: float

    @classmethod
    def read(cls, geometry: Mapping[str, Any], hyper: Mapping[str, Any]) -> WindowPower:
        power = geometry.get("window_power")
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not power > 0:
            raise BundleError(f"geometry.window_power must be a positive number, got {power!r}")
        return cls(float(power))

    def geometry_json(self) -> dict[str, Any]:
        return {"window_power": self.power}


@dataclass(frozen=True, kw_only=True)
class Toy(ProposalFamily):
    """A point per score-map cell regressing its distances to the box's sides, under output names of its own and
    with a sharper window."""

    def grid(self, g: Geometry) -> np.ndarray:
        return geo.point_grid(g.score_size, g.stride)

    def window(self, g: Geometry) -> np.ndarray:
        return geo.cosine_window(g.score_size) ** g.extension.power

    def decode(self, loc: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return geo.decode_ltrb(loc, grid)


TOY = register(
    Toy(name="toy", cls_output="fg", loc_output="ltrb", targets="points-ltrb", box_loss="iou", extension=WindowPower)
)


class ToyModel(SiameseModel):
    """One strided convolution, a pixel-wise correlation and two 1x1 heads."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        width, g = config.widths["conv"], config.geometry
        cells = (g.exemplar_size // STRIDE) ** 2
        self.conv = nn.Conv2d(3, width, STRIDE, stride=STRIDE)
        self.cls = nn.Conv2d(cells, 2, 1)
        self.loc = nn.Conv2d(cells, 4, 1)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image / 255.0)

    def head(self, xfeat: torch.Tensor, zf: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, _, height, width = xfeat.shape
        corr = torch.matmul(zf.flatten(2).transpose(1, 2), xfeat.flatten(2)).reshape(batch, -1, height, width)
        return {"fg": self.cls(corr), "ltrb": nn.functional.softplus(self.loc(corr)) * STRIDE}

    def channel_groups(self) -> dict[str, tuple[str | None, ...]]:
        return {
            "conv.weight": ("conv", None, None, None),
            "conv.bias": ("conv",),
            **{f"{head}.{p}": (None,) * len(t.shape) for head in ("cls", "loc") for p, t in getattr(self, head).named_parameters()},
        }


TOY_S = ModelConfig(
    name="toy-s",
    family="toy",
    widths={"conv": 8},
    geometry=Geometry(exemplar_size=32, instance_size=64, stride=STRIDE, score_size=8, extension=WindowPower(2.0)),
    hyper=Hyper(penalty_k=0.1, window_influence=0.3, lr=0.4, lost_threshold=0.2),
)


@pytest.fixture
def toy_zoo():
    """The toy's model and preset known to the zoo for one test."""
    register_model(TOY, ToyModel, [TOY_S])
    yield TOY_S
    del models.PRESETS[TOY_S.name], models.FAMILY_CLASSES[TOY]


def test_the_registry_knows_the_toy_by_name():
    assert family("toy") is TOY and names()[:3] == ("siamfc", "siamrpn", "nanotrack") and "toy" in names()
    with pytest.raises(BundleError, match=r"unknown model family 'yolo' \(known: siamfc, siamrpn, nanotrack, .*toy"):
        family("yolo")


def test_locate_returns_the_candidate_box_score_and_penalty():
    """One confident point at the crop centre regressing the target's own size: the target stays put, at no
    penalty, with that point's score."""
    g = TOY_S.geometry
    state = TargetState(100.0, 80.0, 40.0, 30.0)
    scale = g.instance_size / search_side(state.w, state.h, g)
    centre = int(np.flatnonzero((TOY.grid(g) == 0).all(axis=1))[0])
    fg = np.zeros((2, g.score_size**2), np.float32)
    fg[1] = -10.0
    fg[1, centre] = 10.0
    ltrb = np.tile(np.float32([20.0, 15.0, 20.0, 15.0])[:, None] * scale, (1, g.score_size**2))
    outputs = {"fg": fg.reshape(1, 2, g.score_size, g.score_size), "ltrb": ltrb.reshape(1, 4, g.score_size, g.score_size)}
    found = TOY.locator(TOY_S.bundle_meta()).locate(outputs, state)
    assert found.penalty == pytest.approx(1.0) and found.score == pytest.approx(1 / (1 + np.exp(-10.0)))
    np.testing.assert_allclose(found.box, (100.0, 80.0, 40.0, 30.0), rtol=1e-5)


def test_train_export_load_and_track_the_toy(toy_zoo, tmp_path):
    settings = {
        "epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "log_every": 1, "data.sources": ["synthetic:2"],
        "data.workers": 0, "validation.every": 1, "validation.synthetic": 1, "optim.warmup_steps": 0,
    }
    result = run(RunSpec(out=tmp_path / "run", config=load_config(None, **settings), students=("toy-s",), progress=False))
    assert result.step == 2 and 0 <= result.history[0]["toy-s"]["auc"] <= 1

    bundle = export_model(checkpoint.load_model(None, result.weights["toy-s"]).eval(), tmp_path / "toy.etb")
    raw = json.loads((bundle.path / METADATA_FILE).read_text())
    assert raw["family"] == "toy" and raw["geometry"]["window_power"] == 2.0
    meta = load_bundle(bundle.path).meta
    assert meta.spec is TOY and meta.geometry == TOY_S.geometry and set(meta.search_io.outputs) == {"fg", "ltrb"}

    frames, truth = synthetic.moving_square(frames=6)
    with SiameseTracker(meta, open_backend(bundle, backend="onnxruntime")) as tracker:
        assert tracker.spec is TOY
        tracker.init(frames[0], truth[0])
        boxes = [tracker.update(frame).box for frame in frames[1:]]
    assert np.isfinite(boxes).all()

    raw["geometry"]["window_power"] = -1
    (bundle.path / METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="geometry.window_power must be a positive number, got -1"):
        load_bundle(bundle.path)
