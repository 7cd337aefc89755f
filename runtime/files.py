"""Writing files so that no reader ever sees half of one: a temporary sibling, then one rename."""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask; reading it means setting it, so it is put straight back."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def inline_image(path: Path, alt: str, mime: str = "image/png") -> str:
    """An ``<img>`` that carries the file's bytes, so an HTML report needs nothing beside it."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def stage(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and return it, with the mode a new file would get
    (mkstemp's 0600 would outlive the rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(name, 0o666 & ~current_umask())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` in one rename."""
    temporary = stage(path, data)
    try:
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def swap_folder(staging: Path, out: Path) -> None:
    """Put the finished folder ``staging`` in the place of ``out`` (a sibling), retiring a previous ``out`` first.
    ``out`` is the old folder whole or the new one, but for the moment between two renames; if the second fails, the
    old folder is put back."""
    if not out.exists():
        staging.rename(out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    out.rename(retired / out.name)
    try:
        staging.rename(out)
    except BaseException:
        (retired / out.name).rename(out)
        retired.rmdir()
        raise
    shutil.rmtree(retired)
