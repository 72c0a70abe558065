"""Atomic file writes: a reader (or a resumed job) sees the old file or the new one, never half.

Torch-free, so the data layer can use it; :func:`echoclr.weights.atomic_torch_save` builds on it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it over ``path`` when the block ends
    without an exception. Whatever happens, no temporary file is left behind.

    For writers that need a file name rather than a file object (exporters, parity checks that
    read the file back before it counts).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:  # a failed write (disk full, read-only) leaves no temporary file behind
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *,
                 fsync: bool = False) -> None:
    """Call ``write(f)`` on a temporary file in the same folder, then rename it over ``path``.

    ``fsync`` flushes the data to disk before the rename (checkpoints: a crash right after
    cannot leave a renamed but empty file).
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())
