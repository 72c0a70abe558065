"""Atomic file writes: a reader (or a resumed job) sees the old file or the new one, never half.

Torch-free, so the data layer can use it; ``runs.atomic_torch_save`` builds on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *,
                 fsync: bool = False) -> None:
    """Call ``write(f)`` on a temporary file in the same folder, then rename it over ``path``.

    ``fsync`` flushes the data to disk before the rename (checkpoints: a crash right after
    cannot leave a renamed but empty file).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:  # a failed write (disk full, read-only) leaves no temporary file behind
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())
