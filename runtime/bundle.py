"""The bundle contract between deploy and runtime: its metadata schema and a reader that trusts nothing.

A bundle is a directory ``NAME.etb/`` holding ``edgetrack.json`` and, per precision, a template model
(z crop -> template features) and a search model (x crop + template features -> outputs).
The schema lives here, once; the bundle writer in ``edgetrack.deploy`` serialises these same dataclasses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from .errors import BundleError

SCHEMA_VERSION = 1
METADATA_FILE = "edgetrack.json"
FAMILIES = ("siamfc", "siamrpn", "nanotrack")
PRECISIONS = ("fp32", "fp16", "int8")

#: Tensor names every bundle uses, so the tracker never guesses: the template model reads ``z``,
#: the search model reads ``x`` plus every template output by name.
TEMPLATE_INPUT = "z"
SEARCH_INPUT = "x"
#: What each family's search model must output.
FAMILY_OUTPUTS = {"siamfc": ("score",), "siamrpn": ("cls", "loc"), "nanotrack": ("cls", "loc")}


@dataclass(frozen=True)
class InputLayout:
    """How a crop becomes the network input: ``((pixel * scale) - mean) / std`` in ``color`` order."""

    color: str = "BGR"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and not any(self.mean) and all(s == 1.0 for s in self.std)


@dataclass(frozen=True)
class Geometry:
    """Crop sizes and the layout of the score map."""

    exemplar_size: int
    instance_size: int
    stride: int
    score_size: int
    context_amount: float = 0.5
    #: siamrpn: anchor aspect ratios and scales (``len(ratios) * len(scales)`` anchors per position).
    anchor_ratios: tuple[float, ...] = ()
    anchor_scales: tuple[float, ...] = ()
    #: siamfc: the search pyramid (batch size of the search model) and the response upsampling factor.
    num_scales: int = 1
    scale_step: float = 1.0
    upsample: int = 1

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_ratios) * len(self.anchor_scales)


@dataclass(frozen=True)
class Hyper:
    """Tracking hyper-parameters, tuned per model."""

    penalty_k: float
    window_influence: float
    lr: float
    #: ``update`` reports the target lost when its best score falls below this.
    lost_threshold: float
    #: siamfc only: penalty on the scales other than 1, and the size smoothing between frames.
    scale_penalty: float = 1.0


@dataclass(frozen=True)
class ModelIO:
    """Input and output tensor shapes by name."""

    inputs: dict[str, tuple[int, ...]]
    outputs: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class ModelFiles:
    """The two model files of one precision, relative to the bundle directory."""

    template: str
    search: str


@dataclass(frozen=True)
class ModelCost:
    """What the fp32 models cost, counted from their ONNX graphs when the bundle was written
    (``edgetrack.deploy.onnx_cost``), so that the runtime can report it without torch or onnx.

    ``params`` counts the elements of the floating-point weight tensors the tracker holds: a tensor stored by both
    models (the backbone the search model repeats) counts once; rank-0 constants (Clip bounds) do not count. It
    counts what the files hold, not what torch trained: a BatchNorm folded into the convolution before it counts
    as that convolution's bias, and constant tensors of the architecture (the 0/1 shift-sum convolution of
    pixel-wise correlation) count too.

    ``template_gflops`` and ``search_gflops`` are the billions of floating-point operations of one run of each model,
    a multiply-add counting 2, over convolutions and matrix products only, as torch's FlopCounterMode counts them.
    """

    params: int
    template_gflops: float
    search_gflops: float


@dataclass(frozen=True)
class BundleMeta:
    """Everything ``edgetrack.json`` holds."""

    name: str
    family: str
    geometry: Geometry
    input: InputLayout
    hyper: Hyper
    template_io: ModelIO
    search_io: ModelIO
    #: precision -> its model files
    models: dict[str, ModelFiles]
    #: file name -> sha256 hex digest
    files: dict[str, str]
    #: who made it: edgetrack, torch and onnx versions, opset, source
    producer: dict[str, Any] = field(default_factory=dict)
    #: parameters and GFLOPs of the fp32 models; None in bundles written before it was recorded
    cost: ModelCost | None = None
    #: int8 only: fingerprint and description of the calibration crops
    calibration: dict[str, Any] | None = None
    #: parity of the exported models against their source, when measured
    parity: dict[str, Any] | None = None
    #: precision -> the accuracy gate's record: its AUC next to fp32's, on which sources, with which backend
    accuracy: dict[str, Any] | None = None
    schema: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False) + "\n"


@dataclass(frozen=True)
class Bundle:
    """A bundle directory whose metadata and files have been checked."""

    path: Path
    meta: BundleMeta

    def model_paths(self, precision: str) -> tuple[Path, Path]:
        """The template and search model files of ``precision``."""
        files = self.meta.models.get(precision)
        if files is None:
            have = ", ".join(sorted(self.meta.models)) or "none"
            raise BundleError(
                f"bundle {self.path} has no {precision} models (it has: {have}); "
                f"build them with `edgetrack build-engine {self.path} --precision {precision}`"
            )
        return self.path / files.template, self.path / files.search


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shapes(raw: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(int(d) for d in shape) for name, shape in raw.items()}


def _cost(raw: Mapping[str, Any] | None) -> ModelCost | None:
    if raw is None:
        return None
    return ModelCost(
        params=int(raw["params"]), template_gflops=float(raw["template_gflops"]), search_gflops=float(raw["search_gflops"])
    )


def meta_from_dict(raw: Mapping[str, Any]) -> BundleMeta:
    """Parse ``edgetrack.json`` content; any missing or malformed field raises ``BundleError``."""
    schema = raw.get("schema")
    if schema != SCHEMA_VERSION:
        raise BundleError(
            f"unsupported bundle schema {schema!r} (this edgetrack reads schema {SCHEMA_VERSION}); "
            "re-export the bundle with this version of edgetrack"
        )
    try:
        family = raw["family"]
        if family not in FAMILIES:
            raise BundleError(f"unknown model family {family!r} in bundle metadata (known: {', '.join(FAMILIES)})")
        geometry = raw["geometry"]
        layout = raw["input"]
        return BundleMeta(
            schema=schema,
            name=str(raw["name"]),
            family=family,
            geometry=Geometry(
                **{
                    **geometry,
                    "anchor_ratios": tuple(geometry.get("anchor_ratios", ())),
                    "anchor_scales": tuple(geometry.get("anchor_scales", ())),
                }
            ),
            input=InputLayout(
                color=layout["color"],
                scale=float(layout["scale"]),
                mean=tuple(layout["mean"]),
                std=tuple(layout["std"]),
            ),
            hyper=Hyper(**raw["hyper"]),
            template_io=ModelIO(_shapes(raw["template_io"]["inputs"]), _shapes(raw["template_io"]["outputs"])),
            search_io=ModelIO(_shapes(raw["search_io"]["inputs"]), _shapes(raw["search_io"]["outputs"])),
            models={p: ModelFiles(**files) for p, files in raw["models"].items()},
            files=dict(raw["files"]),
            producer=dict(raw.get("producer", {})),
            cost=_cost(raw.get("cost")),
            calibration=raw.get("calibration"),
            parity=raw.get("parity"),
            accuracy=raw.get("accuracy"),
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"malformed bundle metadata ({type(exc).__name__}: {exc}); re-export the bundle") from None


def _check_consistency(meta: BundleMeta) -> None:
    """The metadata must describe models the tracker can drive."""
    g = meta.geometry
    if meta.input.color not in ("BGR", "RGB"):
        raise BundleError(f"bundle input colour order must be BGR or RGB, not {meta.input.color!r}")
    z = meta.template_io.inputs.get(TEMPLATE_INPUT)
    if z != (1, 3, g.exemplar_size, g.exemplar_size):
        raise BundleError(
            f"template input {TEMPLATE_INPUT!r} is {z}, but the geometry says (1, 3, {g.exemplar_size}, {g.exemplar_size})"
        )
    x = meta.search_io.inputs.get(SEARCH_INPUT)
    if x != (g.num_scales, 3, g.instance_size, g.instance_size):
        raise BundleError(
            f"search input {SEARCH_INPUT!r} is {x}, but the geometry says "
            f"({g.num_scales}, 3, {g.instance_size}, {g.instance_size})"
        )
    for name, shape in meta.template_io.outputs.items():
        if meta.search_io.inputs.get(name) != shape:
            raise BundleError(f"template output {name!r} {shape} is not a search input of the same shape")
    missing = [o for o in FAMILY_OUTPUTS[meta.family] if o not in meta.search_io.outputs]
    if missing:
        raise BundleError(f"a {meta.family} search model must output {', '.join(missing)}; the bundle does not")
    if meta.family == "siamrpn" and g.num_anchors == 0:
        raise BundleError("a siamrpn bundle needs anchor_ratios and anchor_scales in its geometry")
    for precision, files in meta.models.items():
        if precision not in PRECISIONS:
            raise BundleError(f"unknown precision {precision!r} in bundle (known: {', '.join(PRECISIONS)})")
        for name in (files.template, files.search):
            if name not in meta.files:
                raise BundleError(f"model file {name} of {precision} has no sha256 in the bundle metadata")


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check a bundle: schema, consistency, presence of every file and, with ``verify``, its sha256.

    The I/O shapes of the model files themselves are checked by the backend that loads them
    (``check_io``), because only it can read them without a second parse of each model.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle {root} is not a directory; make one with `edgetrack import-nanotrack` or `edgetrack export`")
    meta_path = root / METADATA_FILE
    if not meta_path.is_file():
        raise BundleError(f"{root} has no {METADATA_FILE}: it is not an edgetrack bundle")
    try:
        raw = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot parse {meta_path}: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{meta_path} must hold a JSON object")
    meta = meta_from_dict(raw)
    _check_consistency(meta)
    for name, digest in meta.files.items():
        file = root / name
        if not file.is_file():
            raise BundleError(f"bundle file {file} is missing; re-export or copy the whole bundle directory")
        if verify and sha256_file(file) != digest:
            raise BundleError(f"bundle file {file} does not match its sha256: it is corrupt or was modified; re-export it")
    return Bundle(path=root, meta=meta)


def check_io(file: Path, expected: ModelIO, actual: ModelIO) -> None:
    """Fail with one line when a loaded model's tensors disagree with the bundle metadata."""
    for kind, want, got in (("input", expected.inputs, actual.inputs), ("output", expected.outputs, actual.outputs)):
        if set(want) != set(got):
            raise BundleError(
                f"{file.name} has {kind}s {sorted(got)}, the bundle metadata says {sorted(want)}; re-export the bundle"
            )
        for name, shape in want.items():
            # A dimension the model leaves symbolic (None) accepts the size the metadata fixes.
            if len(got[name]) != len(shape) or any(g is not None and g != w for g, w in zip(got[name], shape)):
                raise BundleError(
                    f"{file.name} {kind} {name!r} has shape {tuple(got[name])}, the metadata says {tuple(shape)}"
                )
