"""What a file is, apart from its name: size, modification time and a hash of its content, so a
cache entry follows the file (a file replaced in place is redone) and a copy listed twice is
found (the same content in two splits is leakage).

The content hash reads the whole file when it is small and, for larger ones, its first and last
64 KiB and 32 evenly spaced 4 KiB blocks (≈ 0.25 MiB per file): a DICOM's header holds its UIDs
and a compressed stream differs everywhere, so two different videos never share it in practice.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

FULL_HASH_BYTES = 1024**2  # files up to this size are hashed whole
EDGE_BYTES = 64 * 1024  # bytes hashed at each end of a larger file
BLOCK_BYTES = 4096
N_BLOCKS = 32


@dataclass(frozen=True)
class FileIdentity:
    """A file's size (bytes), modification time (ns) and content hash (hex)."""

    size: int
    mtime_ns: int
    content: str

    @property
    def key(self) -> str:
        """16 hex digits naming this version of the file (its cache entry)."""
        text = f"{self.size}:{self.mtime_ns}:{self.content}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def same_content_key(self) -> str:
        """Equal for two files with the same bytes, whatever their names and times."""
        return f"{self.size}:{self.content}"


def file_identity(path: str | os.PathLike) -> FileIdentity:
    """Size, mtime and content hash of one file (see the module docstring for what is read).

    Raises:
        OSError: the file cannot be opened or read.
    """
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        digest = hashlib.sha256()
        if st.st_size <= FULL_HASH_BYTES:
            digest.update(f.read())
        else:
            step = (st.st_size - 2 * EDGE_BYTES) // (N_BLOCKS + 1)
            offsets = [0, *(EDGE_BYTES + step * (k + 1) for k in range(N_BLOCKS)),
                       st.st_size - EDGE_BYTES]
            sizes = [EDGE_BYTES, *[BLOCK_BYTES] * N_BLOCKS, EDGE_BYTES]
            for offset, n in zip(offsets, sizes, strict=True):
                f.seek(offset)
                digest.update(f.read(n))
    return FileIdentity(st.st_size, st.st_mtime_ns, digest.hexdigest()[:32])


def same_content(identities: dict[int, FileIdentity]) -> dict[int, int]:
    """{line: the first line holding the same content} for every later copy; ``identities``
    maps manifest lines to files."""
    first: dict[str, int] = {}
    copies = {}
    for line in sorted(identities):
        key = identities[line].same_content_key
        if key in first:
            copies[line] = first[key]
        else:
            first[key] = line
    return copies

