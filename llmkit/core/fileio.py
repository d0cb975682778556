"""Atomic writes: a crash or an error never leaves a half-written file or directory.

Both helpers write next to the target, fsync, then rename into place, and give
the result the permissions a normal write would have (umask applied), not the
owner-only mode temporary files are created with.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_file(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write bytes or UTF-8 text to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_dir(dst: str | os.PathLike, fill: Callable[[Path], object]) -> Path:
    """Create directory ``dst`` atomically: ``fill(tmpdir)`` writes the files, then rename.

    If ``fill`` raises, ``dst`` is untouched. An existing ``dst`` is moved
    aside and deleted only after the new directory is in place (a crash
    between the two renames is repaired by ``recover_dir``).
    """
    dst = Path(dst).absolute()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        fill(tmp)
        mask = _umask()
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
                os.chmod(f, 0o666 & ~mask)
        os.chmod(tmp, 0o777 & ~mask)
        _fsync_dir(tmp)
        old = None
        if dst.exists():
            old = dst.parent / f".{dst.name}.old-{os.getpid()}-{time.time_ns()}"
            os.rename(dst, old)
        os.rename(tmp, dst)
        _fsync_dir(dst.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def recover_dir(dst: Path) -> None:
    """If a crash hit between the two renames of atomic_write_dir, put the previous version back."""
    if dst.exists():
        return
    olds = sorted(dst.parent.glob(f".{dst.name}.old-*"))
    if olds:
        os.rename(olds[-1], dst)
