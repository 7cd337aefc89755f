"""The registry of model families: every family is one spec (``families.base.FamilySpec``), known by its name.

The tracker, bundle validation, training targets, the losses and teacher labels all ask ``family(name)`` for the
spec of a bundle's or a model's family, so a family is one module: the built-in ones are ``siamfc``, ``siamrpn``
and ``nanotrack`` in this package, and another module adds one with ``register(spec)`` (its torch model goes to
``edgetrack.distill.models.register_model``). The built-in modules are imported on the first look-up, because they
build on the bundle schema, which looks its families up here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import BundleError

if TYPE_CHECKING:
    from .base import FamilySpec

#: The modules of this package that hold the built-in families.
BUILT_IN = ("siamfc", "siamrpn", "nanotrack")

_SPECS: dict[str, FamilySpec] = {}
_loaded = False


def register(spec: FamilySpec) -> FamilySpec:
    """Make ``spec`` known by its name and return it; a name is given once (the same spec again changes nothing)."""
    known = _SPECS.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"model family {spec.name!r} is already registered with another spec")
    _SPECS[spec.name] = spec
    return spec


def _load_built_in() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILT_IN:
            importlib.import_module(f"{__name__}.{module}")


def family(name: str) -> FamilySpec:
    """The spec of the family called ``name``; a one-line ``BundleError`` naming the known ones for any other."""
    _load_built_in()
    spec = _SPECS.get(name)
    if spec is None:
        raise BundleError(f"unknown model family {name!r} (known: {', '.join(names())})")
    return spec


def names() -> tuple[str, ...]:
    """The names of the known families, built-in ones first."""
    _load_built_in()
    return (*BUILT_IN, *(name for name in _SPECS if name not in BUILT_IN))
