"""Write a bundle atomically: every file lands in a temporary directory that is renamed into place at the end,
so a failed export never leaves a half-written bundle, and a bundle that is replaced is replaced whole."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from collections.abc import Mapping

from edgetrack.runtime.bundle import METADATA_FILE, Bundle, BundleMeta, load_bundle, sha256_file
from edgetrack.runtime.errors import BundleError


def write_bundle(out: Path, meta: BundleMeta, files: Mapping[str, bytes], force: bool = False) -> Bundle:
    """Write ``files`` (name -> content) and ``meta`` with their sha256 filled in, then read the result back."""
    out = Path(out)
    if out.exists() and not force:
        raise BundleError(f"{out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, content in files.items():
            (staging / name).write_bytes(content)
        digests = {name: sha256_file(staging / name) for name in files}
        (staging / METADATA_FILE).write_text(dataclasses.replace(meta, files=digests).to_json())
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
