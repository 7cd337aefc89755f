"""Output folders in which a command replaces or removes only what it wrote itself.

A command that writes results into a folder (``eval --out``, ``bench --out``, ``profile --report``) leaves a
manifest there (``.edgetrack-eval.json``, ...) naming every file it wrote. On the next run:

- a command that replaces the whole folder (``profile``) accepts it only when it is new, empty, or holds nothing
  but what its manifest lists;
- a command that writes files into the folder (``eval``, ``bench``) leaves the user's other files alone, and
  refuses to overwrite one that it did not write;
- files the previous run wrote and this one does not are removed, so no stale result survives.

Folders written before manifests are recognised by the command's own file names (``legacy``). Nothing else is ever
removed, and a run that fails removes the folders it created.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import OutputError
from .files import write_atomic

#: names a command wrote before it kept a manifest, read from the folder itself
LegacyNames = Callable[[Path], set[str]]


def manifest_name(tool: str) -> str:
    """``edgetrack eval`` -> ``.edgetrack-eval.json``: one manifest per command, so commands sharing a folder keep theirs."""
    return f".{tool.replace(' ', '-')}.json"


def _listed(folder: Path, tool: str) -> set[str] | None:
    try:
        raw = json.loads((folder / manifest_name(tool)).read_text())
        return {str(name) for name in raw["files"]} if raw["tool"] == tool else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _shown(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def owned_entries(
    folder: Path, tool: str, option: str, legacy: LegacyNames | None = None, writes: Iterable[str] | None = None
) -> set[str]:
    """The entries of ``folder`` that ``tool`` wrote there.

    With ``writes`` (the names this run will write) only those may not be someone else's; without it the folder is
    replaced whole, so nothing in it may be.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} is a file: give a folder")
    if not folder.is_dir():
        return set()
    entries = {p.name for p in folder.iterdir()} - {manifest_name(tool)}
    own = _listed(folder, tool)
    if own is None:
        own = legacy(folder) if legacy is not None else set()
    own &= entries
    if writes is None:
        foreign = entries - own
        if foreign:
            raise OutputError(f"{option} {folder} holds other files ({_shown(foreign)}) that {tool} did not write: give a new or empty folder")
    else:
        clashes = (entries & set(writes)) - own
        if clashes:
            raise OutputError(f"{option} {folder} already holds {_shown(clashes)}, which {tool} did not write: move it or choose another {option}")
    return own


def write_manifest(folder: Path, tool: str, names: Iterable[str]) -> None:
    write_atomic(Path(folder) / manifest_name(tool), json.dumps({"tool": tool, "files": sorted(set(names))}, indent=2) + "\n")


@dataclass
class OutputFolder:
    """A folder claimed for one run of ``tool``: ``commit`` records what the run wrote and removes the previous run's
    leftovers. Used as a context manager, a run that fails removes the folders it created."""

    path: Path
    tool: str
    #: what the previous run of ``tool`` wrote here
    previous: set[str]
    #: the topmost folder the claim created (``path`` or one of its parents)
    created: Path | None

    def commit(self, names: Iterable[str]) -> None:
        names = set(names)
        write_manifest(self.path, self.tool, names)
        for stale in sorted(self.previous - names):
            path = self.path / stale
            if path.is_symlink():
                continue
            if path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None and self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)


def make_writable(folder: Path, option: str) -> Path | None:
    """Create ``folder`` and check a file can be written in it; return the topmost folder this created, or None.
    Nothing is left behind when it fails."""
    folder = Path(folder)
    created = _first_missing(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test.").close()
    except OSError as exc:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise OutputError(f"cannot write results to {folder}: {exc.strerror or exc}; choose another {option}") from None
    return created


def claim_output(folder: Path, tool: str, option: str, writes: Iterable[str], legacy: LegacyNames | None = None) -> OutputFolder:
    """Check, before any work, that ``tool`` may write ``writes`` into ``folder``, and create it."""
    previous = owned_entries(folder, tool, option, legacy, writes)
    return OutputFolder(Path(folder), tool, previous, make_writable(folder, option))


def _first_missing(folder: Path) -> Path | None:
    """The topmost folder of ``folder``'s path that does not exist yet, or None."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            return missing
        missing = path
    return missing
