"""Hand-built Siamese models and scenes with known answers, for the families that have no real weights yet.

The models are real cross-correlation networks with fixed weights: features are 8x8 average pools of the
grey level minus the background's, and the score is the template features correlated over the search features.
On a bright square moving over a flat dark background that score peaks exactly where the square is, so a
tracker driven by these bundles must follow the square.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgetrack.deploy.bundle_writer import write_bundle
from edgetrack.runtime.bundle import Bundle, BundleMeta, Geometry, Hyper, InputLayout, ModelFiles, ModelIO
from edgetrack.runtime.families.siamfc import ScalePyramid
from edgetrack.runtime.families.siamrpn import AnchorLayout

EXEMPLAR, INSTANCE, STRIDE = 127, 255, 8
Z_FEAT = (EXEMPLAR - STRIDE) // STRIDE + 1  # 15
X_FEAT = (INSTANCE - STRIDE) // STRIDE + 1  # 31
SCORE = X_FEAT - Z_FEAT + 1  # 17
BACKGROUND = 20
#: The peak correlation of the square (64 cells of about 208**2) becomes a logit of about 0.75: unsaturated,
#: so neighbouring cells still score differently.
GAIN = 2.7e-7


def _features(input_name: str, output_name: str, prefix: str) -> tuple[list, list]:
    weight = np.full((1, 3, STRIDE, STRIDE), 1.0 / (3 * STRIDE * STRIDE), np.float32)
    inits = [
        numpy_helper.from_array(weight, f"{prefix}pool"),
        numpy_helper.from_array(np.array(float(BACKGROUND), np.float32), f"{prefix}grey"),
    ]
    nodes = [
        helper.make_node("Conv", [input_name, f"{prefix}pool"], [f"{prefix}mean"], strides=[STRIDE, STRIDE]),
        helper.make_node("Sub", [f"{prefix}mean", f"{prefix}grey"], [output_name]),
    ]
    return nodes, inits


def _model(nodes, inits, inputs, outputs) -> bytes:
    graph = helper.make_graph(
        nodes,
        "synthetic",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _correlation(batch: int) -> tuple[list, list]:
    nodes, inits = _features("x", "xf", "x_")
    inits.append(numpy_helper.from_array(np.array(GAIN, np.float32), "gain"))
    nodes += [
        helper.make_node("Conv", ["xf", "zf"], ["raw"]),
        helper.make_node("Mul", ["raw", "gain"], ["corr"]),
    ]
    return nodes, inits


def _template() -> bytes:
    nodes, inits = _features("z", "zf", "z_")
    return _model(nodes, inits, [("z", [1, 3, EXEMPLAR, EXEMPLAR])], [("zf", [1, 1, Z_FEAT, Z_FEAT])])


def _write(out: Path, family: str, geometry: Geometry, hyper: Hyper, search: bytes, search_io: ModelIO) -> Bundle:
    meta = BundleMeta(
        name=f"synthetic-{family}",
        family=family,
        geometry=geometry,
        input=InputLayout(),
        hyper=hyper,
        template_io=ModelIO({"z": (1, 3, EXEMPLAR, EXEMPLAR)}, {"zf": (1, 1, Z_FEAT, Z_FEAT)}),
        search_io=search_io,
        models={"fp32": ModelFiles("template.onnx", "search.onnx")},
        files={},
    )
    return write_bundle(out, meta, {"template.onnx": _template(), "search.onnx": search})


def siamfc_bundle(out: Path, num_scales: int = 3) -> Bundle:
    nodes, inits = _correlation(num_scales)
    nodes.append(helper.make_node("Identity", ["corr"], ["score"]))
    search_inputs = [("x", [num_scales, 3, INSTANCE, INSTANCE]), ("zf", [1, 1, Z_FEAT, Z_FEAT])]
    search = _model(nodes, inits, search_inputs, [("score", [num_scales, 1, SCORE, SCORE])])
    return _write(
        out,
        "siamfc",
        Geometry(EXEMPLAR, INSTANCE, STRIDE, SCORE, 0.5, ScalePyramid(num_scales=num_scales, scale_step=1.0375, upsample=16, scale_penalty=0.9745)),
        Hyper(penalty_k=0.0, window_influence=0.176, lr=0.59, lost_threshold=0.6),
        search,
        ModelIO({"x": (num_scales, 3, INSTANCE, INSTANCE), "zf": (1, 1, Z_FEAT, Z_FEAT)}, {"score": (num_scales, 1, SCORE, SCORE)}),
    )


def siamrpn_bundle(out: Path) -> Bundle:
    """One square anchor of 64x64 and zero regression: boxes are the anchors, scores are the correlation."""
    nodes, inits = _correlation(1)
    inits.append(numpy_helper.from_array(np.zeros((1, 4, 1, 1), np.float32), "no_delta"))
    nodes += [
        helper.make_node("Neg", ["corr"], ["background"]),
        helper.make_node("Concat", ["background", "corr"], ["cls"], axis=1),
        helper.make_node("Mul", ["corr", "no_delta"], ["loc"]),
    ]
    search_io = ModelIO({"x": (1, 3, INSTANCE, INSTANCE), "zf": (1, 1, Z_FEAT, Z_FEAT)}, {"cls": (1, 2, SCORE, SCORE), "loc": (1, 4, SCORE, SCORE)})
    search = _model(nodes, inits, [(n, list(s)) for n, s in search_io.inputs.items()], [(n, list(s)) for n, s in search_io.outputs.items()])
    return _write(
        out,
        "siamrpn",
        Geometry(EXEMPLAR, INSTANCE, STRIDE, SCORE, 0.5, AnchorLayout(ratios=(1.0,), scales=(8.0,))),
        # A weak window: the unsaturated scores of neighbouring cells differ by a few hundredths only.
        Hyper(penalty_k=0.04, window_influence=0.1, lr=0.4, lost_threshold=0.6),
        search,
        search_io,
    )


def moving_square(frames: int = 40, side: int = 64, step: tuple[int, int] = (3, 2), size=(360, 480)) -> tuple[list, np.ndarray]:
    """A bright textured square moving over a dark frame; returns frames and x, y, w, h ground truth."""
    rng = np.random.default_rng(3)
    texture = rng.integers(200, 256, (side, side, 3), dtype=np.uint8)
    images, boxes = [], []
    for i in range(frames):
        x, y = 60 + step[0] * i, 80 + step[1] * i
        image = np.full((*size, 3), BACKGROUND, np.uint8)
        image[y : y + side, x : x + side] = texture
        images.append(image)
        boxes.append((x, y, side, side))
    return images, np.asarray(boxes, float)
