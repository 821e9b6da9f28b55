"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

A crash, a full disk or a kill mid-write leaves either the old file or the new one, never
half of one. Used for models, ledgers, schemas and synthetic tables alike.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fedsynth.common.errors import StorageError


@contextlib.contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if mode is not None:
            os.chmod(tmp_path, mode)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as exc:  # full disk, quota, I/O error, read-only folder: name it, keep the old file
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        reason = exc.strerror or str(exc)
        raise StorageError(f"{path}: could not write ({reason}; errno {exc.errno}); the previous version "
                           f"of the file, if any, is unchanged. {exc}", exc.errno) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
