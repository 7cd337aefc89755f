"""Students that edgetrack distilled itself, shipped with the runtime: ``NAME.etb`` bundles with a model card
``NAME.md`` each, usable by name wherever a bundle path is accepted (``edgetrack eval edgetrack-nano-m ...``).

``benchmarks/train_pretrained.py`` made them; its exact budget is on each card.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..bundle import METADATA_FILE, hyper_json, load_bundle
from ..errors import BundleError, OutputError

FOLDER = Path(__file__).resolve().parent


def shipped(folder: Path = FOLDER) -> dict[str, Path]:
    """Shipped bundles by name."""
    return {path.name.removesuffix(".etb"): path for path in sorted(folder.glob("*.etb")) if path.is_dir()}


def model_card(name: str, folder: Path = FOLDER) -> Path:
    return folder / f"{name}.md"


def resolve(spec: str | Path, folder: Path = FOLDER) -> Path:
    """A bundle path as given when it exists, else the shipped student of that name; one line listing the shipped
    names when it is neither."""
    path = Path(spec)
    if path.exists():
        return path
    students = shipped(folder)
    if str(spec) in students:
        return students[str(spec)]
    names = ", ".join(students) or "none in this install"
    raise BundleError(f"{spec} is neither a bundle folder nor a shipped student (shipped: {names})")


def writable_copy(spec: str | Path, dest: Path | None = None, folder: Path = FOLDER) -> Path:
    """Where a command that adds to a bundle (``build-engine``, ``bench``) may write: the bundle itself when it is
    the user's, or for a shipped student a copy at ``dest`` (default ``./NAME.etb``), never the installed one. A
    copy made before is reused."""
    path = resolve(spec, folder)
    if not path.resolve().is_relative_to(folder):
        return path
    dest = Path(dest) if dest is not None else Path(path.name)
    if dest.exists():
        if (dest / METADATA_FILE).is_file():
            return dest
        raise OutputError(f"{dest} exists and is not a bundle: give another place for the copy of {spec}")
    try:
        shutil.copytree(path, dest)
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise OutputError(f"cannot copy {spec} to {dest}: {exc.strerror or exc}") from None
    return dest


@dataclass(frozen=True)
class ModelSummary:
    """A row of ``edgetrack models``: a zoo preset (counted with torch) or a shipped student (read from its bundle)."""

    name: str
    family: str
    teacher: str | None
    params: int
    fp32_mb: float
    #: floating-point operations (a multiply-add counts 2) of one template run and one search run, in billions
    template_gflops: float
    search_gflops: float
    hyper: dict[str, float]


@dataclass(frozen=True)
class ShippedStudent(ModelSummary):
    """A shipped student's row, with where its model card is."""

    card: str


def describe(name: str, folder: Path = FOLDER) -> ShippedStudent:
    bundle = load_bundle(shipped(folder)[name])
    meta, cost = bundle.meta, bundle.meta.cost
    return ShippedStudent(
        name=name,
        family=meta.family,
        teacher=meta.producer.get("teacher"),
        params=cost.params,
        fp32_mb=sum(path.stat().st_size for path in bundle.model_paths("fp32")) / 1e6,
        template_gflops=cost.template_gflops,
        search_gflops=cost.search_gflops,
        hyper=hyper_json(meta.geometry, meta.hyper),
        card=str(model_card(name, folder)),
    )
