"""Write a bundle atomically: every file lands in a temporary directory that is renamed into place at the end,
so a failed export never leaves a half-written bundle, and a bundle that is replaced is replaced whole.

Changes to an existing bundle (a precision added by ``build-engine``) hold the bundle's lock while they read,
merge and write its metadata, so that two builds running at once on one bundle both end up in it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import onnx

from edgetrack.runtime.bundle import METADATA_FILE, Bundle, BundleMeta, ModelFiles, load_bundle, sha256_file
from edgetrack.runtime.errors import BundleError, OutputError
from edgetrack.runtime.files import stage, swap_folder, write_atomic
from edgetrack.runtime.records import AccuracyRecord

from .onnx_cost import model_cost

try:
    import fcntl
except ImportError:  # Windows: builds on one bundle at once are not guarded there
    fcntl = None

#: The lock file inside a bundle, removed by the process that releases the lock (the runtime ignores it). One
#: left by a process killed while holding the lock is harmless: the next change takes the lock and removes it.
LOCK_FILE = ".edgetrack.lock"
#: How long a change waits for another one to release the bundle; changes hold it for seconds at most.
LOCK_WAIT_S = 600.0
LOCK_POLL_S = 0.05


def os_reason(exc: OSError) -> str:
    """The system's words for ``exc``; ``shutil.copytree`` gathers one error per file into a ``shutil.Error``."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        return exc.args[0][0][2]
    return exc.strerror or str(exc)


@contextmanager
def writing(what: str, folder: Path, advice: str) -> Iterator[None]:
    """An ``OSError`` inside (a full disk, a folder that is missing or read-only) becomes one line naming ``folder``."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {what} in {folder}: {os_reason(exc)}; {advice}") from None


def _check_replaceable(out: Path) -> None:
    """``--force`` replaces a bundle, never a user's file or folder that happens to be at ``out``."""
    if out.is_symlink():
        what = "a symbolic link"
    elif not out.is_dir():
        what = "a file"
    elif not (out / METADATA_FILE).is_file():
        what = f"a folder without {METADATA_FILE}"
    else:
        return
    raise OutputError(f"{out} is {what}, not an edgetrack bundle: --force replaces only a bundle; choose another -o or remove it yourself")


def write_bundle(out: Path, meta: BundleMeta, files: Mapping[str, bytes], force: bool = False) -> Bundle:
    """Write ``files`` (name -> content) and ``meta`` with their sha256 and the cost of its fp32 models filled in,
    then read the result back. Every bundle starts from fp32 models; other precisions are added to it later."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not force:
            raise BundleError(f"{out} already exists; pass --force to replace it")
        _check_replaceable(out)
    fp32 = meta.models["fp32"]
    cost = model_cost(onnx.load_from_string(files[fp32.template]), onnx.load_from_string(files[fp32.search]))
    with writing("the bundle", out.parent, "free space there or choose another -o"):
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            for name, content in files.items():
                (staging / name).write_bytes(content)
            digests = {name: sha256_file(staging / name) for name in files}
            (staging / METADATA_FILE).write_text(dataclasses.replace(meta, files=digests, cost=cost).to_json())
            load_bundle(staging)
            swap_folder(staging, out)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return load_bundle(out)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _try_lock(lock: Path) -> int | None:
    """An open descriptor of ``lock`` holding its exclusive lock, or None when another process holds it. A lock
    file that its holder removed before releasing it is stale: the lock is taken again on the new file."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _same_file(fd, lock):
            return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


@contextmanager
def bundle_lock(root: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the advisory lock of the bundle ``root``, waiting up to ``wait_s`` for another process to release it.
    The lock file is removed before the lock is released, so a bundle at rest has none."""
    if fcntl is None:
        yield
        return
    lock = Path(root) / LOCK_FILE
    deadline = time.monotonic() + wait_s
    with writing("the lock file", root, "build-engine writes into the bundle: make it writable"):
        while (fd := _try_lock(lock)) is None:
            if time.monotonic() > deadline:
                raise BundleError(
                    f"another edgetrack process has held {lock} for over {wait_s:.0f} s while changing the bundle; "
                    "let it finish and run this again"
                )
            time.sleep(LOCK_POLL_S)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def merge_meta(
    root: Path,
    precision: str,
    models: ModelFiles | None = None,
    files: Mapping[str, str] | None = None,
    accuracy: AccuracyRecord | None = None,
    calibration: dict | None = None,
) -> Bundle:
    """Re-read the bundle's metadata, merge in what one build of ``precision`` made (its models, the sha256 of its
    files, its accuracy record, the calibration), and replace the metadata in one rename; returns the bundle read
    back. Call it under ``bundle_lock``, so that no other change lands between the read and the write."""
    meta = load_bundle(root, verify=False).meta
    updates = {}
    if models is not None:
        updates["models"] = {**meta.models, precision: models}
    if files:
        updates["files"] = {**meta.files, **files}
    if accuracy is not None:
        updates["accuracy"] = {**(meta.accuracy or {}), precision: accuracy}
    if calibration is not None:
        updates["calibration"] = calibration
    with writing("the metadata", root, "free space there"):
        write_atomic(root / METADATA_FILE, dataclasses.replace(meta, **updates).to_json())
    return load_bundle(root)


def _install(root: Path, files: Mapping[str, bytes]) -> dict[str, str]:
    """Write every file under a temporary name first (where a full disk fails), then rename them all into place;
    returns their sha256."""
    staged = []
    try:
        with writing("the new models", root, "free space there; the bundle is unchanged"):
            for name, content in files.items():
                staged.append((stage(root / name, content), root / name))
        digests = {final.name: sha256_file(tmp) for tmp, final in staged}
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return digests


def add_precision(
    bundle: Bundle, precision: str, files: Mapping[str, bytes], accuracy: AccuracyRecord | None = None, calibration: dict | None = None
) -> Bundle:
    """Add (or replace) one precision's template and search models in an existing bundle.

    ``files`` maps ``template.<precision>.onnx`` and ``search.<precision>.onnx`` (any two names, template first)
    to their bytes; ``accuracy`` is the accuracy gate's record for ``precision`` and ``calibration`` the
    calibration record. The new files are written under temporary names and renamed, then the metadata is
    merged and replaced in one rename, all under the bundle's lock, so a failure at any point leaves the bundle
    as it was (at worst with an unreferenced new file), and a build running beside this one keeps its own update.
    """
    names = list(files)
    if len(names) != 2:
        raise BundleError(f"a precision needs a template and a search model, got {names}")
    with bundle_lock(bundle.path):
        digests = _install(bundle.path, files)
        return merge_meta(bundle.path, precision, ModelFiles(*names), digests, accuracy, calibration)
