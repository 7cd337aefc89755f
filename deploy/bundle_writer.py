"""Write a bundle atomically: every file lands in a temporary directory that is renamed into place at the end,
so a failed export never leaves a half-written bundle, and a bundle that is replaced is replaced whole."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import onnx

from edgetrack.runtime.bundle import METADATA_FILE, Bundle, BundleMeta, ModelFiles, load_bundle, sha256_file
from edgetrack.runtime.errors import BundleError
from edgetrack.runtime.files import stage, write_atomic

from .onnx_cost import model_cost


def write_bundle(out: Path, meta: BundleMeta, files: Mapping[str, bytes], force: bool = False) -> Bundle:
    """Write ``files`` (name -> content) and ``meta`` with their sha256 and the cost of its fp32 models filled in,
    then read the result back. Every bundle starts from fp32 models; other precisions are added to it later."""
    out = Path(out)
    if out.exists() and not force:
        raise BundleError(f"{out} already exists; pass --force to replace it")
    fp32 = meta.models["fp32"]
    cost = model_cost(onnx.load_from_string(files[fp32.template]), onnx.load_from_string(files[fp32.search]))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, content in files.items():
            (staging / name).write_bytes(content)
        digests = {name: sha256_file(staging / name) for name in files}
        (staging / METADATA_FILE).write_text(dataclasses.replace(meta, files=digests, cost=cost).to_json())
        load_bundle(staging)
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.rename(retired / out.name)
            staging.rename(out)
            shutil.rmtree(retired)
        else:
            staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return load_bundle(out)


def update_meta(bundle: Bundle, **updates) -> Bundle:
    """Replace metadata fields of an existing bundle in one rename; returns the bundle read back."""
    write_atomic(bundle.path / METADATA_FILE, dataclasses.replace(bundle.meta, **updates).to_json())
    return load_bundle(bundle.path)


def add_precision(bundle: Bundle, precision: str, files: Mapping[str, bytes], **meta_updates) -> Bundle:
    """Add (or replace) one precision's template and search models in an existing bundle.

    ``files`` maps ``template.<precision>.onnx`` and ``search.<precision>.onnx`` (any two names, template first)
    to their bytes; ``meta_updates`` replaces metadata fields such as ``calibration`` or ``accuracy``. The new
    files are written under temporary names and renamed, then the metadata is replaced in one rename, so a
    failure at any point leaves the bundle as it was: at worst with an unreferenced new file.
    """
    root = bundle.path
    names = list(files)
    if len(names) != 2:
        raise BundleError(f"a precision needs a template and a search model, got {names}")
    staged = []
    try:
        for name, content in files.items():
            staged.append((stage(root / name, content), root / name))
        digests = {final.name: sha256_file(tmp) for tmp, final in staged}
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return update_meta(
        bundle,
        models={**bundle.meta.models, precision: ModelFiles(template=names[0], search=names[1])},
        files={**bundle.meta.files, **digests},
        **meta_updates,
    )
