"""The bundle contract between deploy and runtime: its metadata schema and a reader that trusts nothing.

A bundle is a directory ``NAME.etb/`` holding ``edgetrack.json`` and, per precision, a template model
(z crop -> template features) and a search model (x crop + template features -> outputs).
The schema lives here, once; the bundle writer in ``edgetrack.deploy`` serialises these same dataclasses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

from edgetrack.defaults import PRECISIONS

from .errors import BundleError
from .families import family
from .onnx_refs import NotProtobuf, external_locations
from .records import AccuracyRecord, ParityRecord

if TYPE_CHECKING:
    from .families.base import FamilySpec

SCHEMA_VERSION = 1
METADATA_FILE = "edgetrack.json"

#: Tensor names every bundle uses, so the tracker never guesses: the template model reads ``z``,
#: the search model reads ``x`` plus every template output by name.
TEMPLATE_INPUT = "z"
SEARCH_INPUT = "x"
#: Schema 1 writes the keys of every built-in family's geometry extension in every bundle, with these values where
#: the bundle's family has no such setting, and reads bundles with or without them (JSON values).
NEUTRAL_GEOMETRY = {"anchor_ratios": [], "anchor_scales": [], "num_scales": 1, "scale_step": 1.0, "upsample": 1}
NEUTRAL_HYPER = {"scale_penalty": 1.0}


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
class GeometryExtension:
    """A family's own settings beyond the common ``Geometry`` and ``Hyper`` fields, typed per family
    (``runtime.families``): anchor shapes, a scale pyramid. This base is the extension of a family that has none.

    ``edgetrack.json`` keeps an extension's values among the common ones, in the ``geometry`` and ``hyper`` objects.
    """

    @property
    def pyramid(self) -> tuple[int, float]:
        """The search pyramid: search crops per frame (the search model's batch) and the ratio of neighbouring
        crops' sides; one crop unless the family searches several scales."""
        return 1, 1.0

    @classmethod
    def read(cls, geometry: Mapping[str, Any], hyper: Mapping[str, Any]) -> GeometryExtension:
        """The extension a bundle's ``geometry`` and ``hyper`` objects hold, every value checked (``BundleError``)."""
        return cls()

    def geometry_json(self) -> dict[str, Any]:
        """What the extension adds to the bundle's ``geometry`` object."""
        return {}

    def hyper_json(self) -> dict[str, Any]:
        """What the extension adds to the bundle's ``hyper`` object."""
        return {}


@dataclass(frozen=True)
class Geometry:
    """Crop sizes and the layout of the score map; ``extension`` holds what only the model's family has."""

    exemplar_size: int
    instance_size: int
    stride: int
    score_size: int
    context_amount: float = 0.5
    extension: GeometryExtension = GeometryExtension()

    @property
    def num_scales(self) -> int:
        """Search crops per frame: the batch of the search model."""
        return self.extension.pyramid[0]

    @property
    def scale_step(self) -> float:
        """The ratio of neighbouring search crops' sides."""
        return self.extension.pyramid[1]


@dataclass(frozen=True)
class Hyper:
    """Tracking hyper-parameters, tuned per model."""

    penalty_k: float
    window_influence: float
    lr: float
    #: ``update`` reports the target lost when its best score falls below this.
    lost_threshold: float


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
    parity: ParityRecord | None = None
    #: precision -> the accuracy gate's record: its AUC next to fp32's, on which sources, with which backend
    accuracy: dict[str, AccuracyRecord] | None = None
    schema: int = SCHEMA_VERSION

    @property
    def spec(self) -> FamilySpec:
        """The family's spec (``runtime.families``)."""
        return family(self.family)

    def to_json(self) -> str:
        raw = dataclasses.asdict(self)
        raw["geometry"], raw["hyper"] = geometry_json(self.geometry), hyper_json(self.geometry, self.hyper)
        raw["parity"] = self.parity.to_json() if self.parity is not None else None
        raw["accuracy"] = {p: r.to_json() for p, r in self.accuracy.items()} if self.accuracy is not None else None
        return json.dumps(raw, indent=2, sort_keys=False) + "\n"


def geometry_json(g: Geometry) -> dict[str, Any]:
    """The ``geometry`` object of ``edgetrack.json``: the common fields, the schema's neutral family keys, the
    extension's values."""
    common = {f.name: getattr(g, f.name) for f in dataclasses.fields(g) if f.name != "extension"}
    return common | NEUTRAL_GEOMETRY | g.extension.geometry_json()


def hyper_json(g: Geometry, hyper: Hyper) -> dict[str, Any]:
    """The ``hyper`` object of ``edgetrack.json``: ``hyper``, the schema's neutral family keys, the extension's values."""
    return dataclasses.asdict(hyper) | NEUTRAL_HYPER | g.extension.hyper_json()


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


_MAX_SIDE = 4096
_MAX_ELEMENTS = 1 << 26


def _reject(key: str, want: str, value: Any) -> BundleError:
    return BundleError(f"bundle metadata {key} must be {want}, got {value!r}; re-export the bundle")


def _int(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _reject(key, f"an integer in {low}..{high}", value)
    return value


def _float(value: Any, key: str, low: float = -math.inf, high: float = math.inf, above: bool = False) -> float:
    """A finite number in ``[low, high]``, or ``(low, high]`` with ``above``."""
    number_ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not number_ok or value < low or (above and value == low) or value > high:
        bounds = f"{'(' if above else '['}{low:g}, {high:g}]"
        raise _reject(key, f"a finite number in {bounds}", value)
    return float(value)


def _floats(value: Any, key: str, count: int | None = None, **bounds) -> tuple[float, ...]:
    if not isinstance(value, list) or (count is not None and len(value) != count):
        raise _reject(key, f"a list of {count or 'some'} numbers", value)
    return tuple(_float(v, f"{key}[{i}]", **bounds) for i, v in enumerate(value))


def _object(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw[key]
    if not isinstance(value, dict):
        raise _reject(key, "an object", value)
    return value


def _shapes(raw: Mapping[str, Any], key: str) -> dict[str, tuple[int, ...]]:
    if not isinstance(raw, dict):
        raise _reject(key, "an object", raw)
    shapes = {}
    for name, shape in raw.items():
        if not isinstance(shape, list) or not 1 <= len(shape) <= 8:
            raise _reject(f"{key}.{name}", "a list of 1 to 8 dimensions", shape)
        dims = tuple(_int(d, f"{key}.{name}", 1, 1 << 16) for d in shape)
        if math.prod(dims) > _MAX_ELEMENTS:
            raise _reject(f"{key}.{name}", f"a tensor of at most {_MAX_ELEMENTS} elements", shape)
        shapes[name] = dims
    return shapes


def _io(raw: Mapping[str, Any], key: str) -> ModelIO:
    io = _object(raw, key)
    return ModelIO(_shapes(io["inputs"], f"{key}.inputs"), _shapes(io["outputs"], f"{key}.outputs"))


def _geometry(raw: Mapping[str, Any], spec: FamilySpec) -> Geometry:
    g, h = _object(raw, "geometry"), _object(raw, "hyper")
    extension = spec.extension.read(g, h)
    own = extension.geometry_json()
    common = {f.name for f in dataclasses.fields(Geometry)} - {"extension"}
    unknown = set(g) - common - set(NEUTRAL_GEOMETRY) - set(own)
    if unknown:
        raise BundleError(f"unknown geometry field(s) {', '.join(sorted(unknown))} in bundle metadata; re-export the bundle")
    for section, values, neutral, owned in (("geometry", g, NEUTRAL_GEOMETRY, own), ("hyper", h, NEUTRAL_HYPER, extension.hyper_json())):
        for key, value in neutral.items():
            if key not in owned and values.get(key, value) != value:
                raise _reject(f"{section}.{key}", f"{value!r} in a {spec.name} bundle, which has no such setting", values[key])
    return Geometry(
        exemplar_size=_int(g["exemplar_size"], "geometry.exemplar_size", 1, _MAX_SIDE),
        instance_size=_int(g["instance_size"], "geometry.instance_size", 1, _MAX_SIDE),
        stride=_int(g["stride"], "geometry.stride", 1, 256),
        score_size=_int(g["score_size"], "geometry.score_size", 1, 1024),
        context_amount=_float(g.get("context_amount", 0.5), "geometry.context_amount", 0.0, 10.0),
        extension=extension,
    )


def _hyper(raw: Mapping[str, Any]) -> Hyper:
    h = _object(raw, "hyper")
    return Hyper(
        penalty_k=_float(h["penalty_k"], "hyper.penalty_k", 0.0, 100.0),
        window_influence=_float(h["window_influence"], "hyper.window_influence", 0.0, 1.0),
        lr=_float(h["lr"], "hyper.lr", 0.0, 1.0),
        lost_threshold=_float(h["lost_threshold"], "hyper.lost_threshold"),
    )


def _input_layout(raw: Mapping[str, Any]) -> InputLayout:
    layout = _object(raw, "input")
    if layout["color"] not in ("BGR", "RGB"):
        raise _reject("input.color", "BGR or RGB", layout["color"])
    return InputLayout(
        color=layout["color"],
        scale=_float(layout["scale"], "input.scale", 0.0, 1e3, above=True),
        mean=_floats(layout["mean"], "input.mean", 3),
        std=_floats(layout["std"], "input.std", 3, low=0.0, above=True),
    )


def _cost(raw: Mapping[str, Any] | None) -> ModelCost | None:
    if raw is None:
        return None
    return ModelCost(
        params=int(raw["params"]), template_gflops=float(raw["template_gflops"]), search_gflops=float(raw["search_gflops"])
    )


def check_file_name(name: Any) -> str:
    """A bundle file name must be a plain relative path that stays inside the bundle: no absolute path, no ``..``."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise BundleError(f"bundle file name {name!r} is not a relative path inside the bundle; the bundle is refused")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or ".." in PurePosixPath(name).parts:
        raise BundleError(f"bundle file name {name!r} points outside the bundle; the bundle is refused")
    return name


def _files(raw: Mapping[str, Any]) -> dict[str, str]:
    files = {}
    for name, digest in _object(raw, "files").items():
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise _reject(f"files.{name}", "a sha256 hex digest", digest)
        files[check_file_name(name)] = digest
    return files


def _models(raw: Mapping[str, Any]) -> dict[str, ModelFiles]:
    models = {}
    for precision, files in _object(raw, "models").items():
        if not isinstance(files, dict) or set(files) != {"template", "search"}:
            raise _reject(f"models.{precision}", "an object with template and search", files)
        models[precision] = ModelFiles(template=check_file_name(files["template"]), search=check_file_name(files["search"]))
    return models


def meta_from_dict(raw: Mapping[str, Any]) -> BundleMeta:
    """Parse ``edgetrack.json`` content, checking the type and range of every field once: any missing, malformed or
    out-of-range field (NaN, a zero std or stride, a string where a number belongs, a size that would ask for
    terabytes) raises ``BundleError``."""
    schema = raw.get("schema")
    if schema != SCHEMA_VERSION:
        raise BundleError(
            f"unsupported bundle schema {schema!r} (this edgetrack reads schema {SCHEMA_VERSION}); "
            "re-export the bundle with this version of edgetrack"
        )
    try:
        spec = family(raw["family"])
        return BundleMeta(
            schema=schema,
            name=str(raw["name"]),
            family=spec.name,
            geometry=_geometry(raw, spec),
            input=_input_layout(raw),
            hyper=_hyper(raw),
            template_io=_io(raw, "template_io"),
            search_io=_io(raw, "search_io"),
            models=_models(raw),
            files=_files(raw),
            producer=dict(raw.get("producer", {})),
            cost=_cost(raw.get("cost")),
            calibration=raw.get("calibration"),
            parity=None if raw.get("parity") is None else ParityRecord.from_json(raw["parity"]),
            accuracy=None if raw.get("accuracy") is None else {p: AccuracyRecord.from_json(r) for p, r in _object(raw, "accuracy").items()},
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"malformed bundle metadata ({type(exc).__name__}: {exc}); re-export the bundle") from None


def _check_consistency(meta: BundleMeta) -> None:
    """The metadata must describe models the tracker can drive."""
    g = meta.geometry
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
    missing = [o for o in meta.spec.outputs if o not in meta.search_io.outputs]
    if missing:
        raise BundleError(f"a {meta.family} search model must output {', '.join(missing)}; the bundle does not")
    for precision, files in meta.models.items():
        if precision not in PRECISIONS:
            raise BundleError(f"unknown precision {precision!r} in bundle (known: {', '.join(PRECISIONS)})")
        for name in (files.template, files.search):
            if name not in meta.files:
                raise BundleError(f"model file {name} of {precision} has no sha256 in the bundle metadata")


def _inside(root: Path, name: str) -> Path:
    """``root / name``, refused when it resolves (through symlinks) outside ``root``."""
    path = root / name
    if not path.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"bundle file {name!r} resolves outside the bundle (a symlink?); the bundle is refused")
    return path


def _check_external_data(root: Path, meta: BundleMeta) -> None:
    """Tensor values an ONNX model keeps in another file must come from a file of the bundle, checked like the rest."""
    for name in sorted({n for files in meta.models.values() for n in (files.template, files.search)}):
        if not name.endswith(".onnx"):
            continue
        try:
            locations = external_locations((root / name).read_bytes())
        except NotProtobuf:
            continue  # not ONNX at all: the backend that loads it says so in one line
        for location in locations:
            if location not in meta.files:
                raise BundleError(
                    f"{name} reads tensor data from {location!r}, which is not a file of the bundle; the bundle is refused"
                )


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check a bundle: schema, field types and ranges, consistency, file names that stay inside the bundle,
    presence of every file and, with ``verify``, its sha256; ONNX external data only from the bundle's own files.

    The I/O shapes of the model files themselves are checked by the backend that loads them
    (``check_io``), because only it can read them without a second parse of each model.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle {root} is not a directory; make one with `edgetrack import-nanotrack` or `edgetrack export`")
    meta_path = _inside(root, METADATA_FILE)
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
        file = _inside(root, name)
        if not file.is_file():
            raise BundleError(f"bundle file {file} is missing; re-export or copy the whole bundle directory")
        if verify and sha256_file(file) != digest:
            raise BundleError(f"bundle file {file} does not match its sha256: it is corrupt or was modified; re-export it")
    _check_external_data(root, meta)
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
