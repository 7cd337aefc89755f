"""Writing files so that no reader ever sees half of one: a temporary sibling, then one rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def stage(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and return it, with the mode a new file would get
    (mkstemp's 0600 would outlive the rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(name, 0o666 & ~mask)
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
