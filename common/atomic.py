"""Atomic writes: a file or a directory appears whole under its name, or not at all.

Everything is written under a temporary name in the same directory (so the final rename stays on
one file system, where POSIX and Windows both make `os.replace` atomic), then renamed into place.
A killed process leaves at most a dot-prefixed temporary beside the target, never a half-written
target.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux): setting
    it to read it would briefly change it for every thread."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; when the block ends without an exception the
    file is renamed onto `path`, otherwise it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the result private
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` (text as UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def fsync_tree(root: Path) -> None:
    """Flush every file under `root`, then the directories, so that a rename that follows is not
    seen before the data after a power loss."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory for fsync
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, replace: bool = False, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `path` to fill; on success it takes `path`'s name.

    An existing `path` is an error unless `replace`; then it is first renamed to `.NAME.old` and
    removed after the swap, so a kill between the two renames leaves the old copy under that name
    (`vae.checkpoint` falls back to it). `durable` fsyncs the new tree before the swap."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the result private
    try:
        yield tmp
        if durable:
            fsync_tree(tmp)
        if path.exists():
            if not replace:
                raise FileExistsError(f"{path}: exists already")
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
        else:
            old = None
            os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
