"""``echoclr info CACHE|MANIFEST``: what a cache or a manifest holds, before anything trains on
it: counts per split × view × label, videos per study, frame rates and lengths, and warnings
(a split without a class, a tiny validation split, a view missing from a split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from echoclr.data.manifest import read_manifest
from echoclr.data.summary import describe
from echoclr.errors import UserError
from echoclr.options import required


@dataclass(frozen=True)
class InfoConfig:
    """What to describe."""

    target: str = required("A cache folder written by `echoclr ingest`, or a manifest CSV.")


def info(cfg: InfoConfig) -> str:
    """The summary of a cache's ``manifest.csv`` or of a manifest CSV, as text.

    Raises:
        UserError: the target is neither a cache folder nor a CSV file.
    """
    target = Path(cfg.target)
    manifest = target / "manifest.csv" if target.is_dir() else target
    if not manifest.is_file():
        what = "folder holds no manifest.csv" if target.is_dir() else "file does not exist"
        raise UserError(f"{target}: the {what}; give a cache folder written by `echoclr ingest` "
                        "or a manifest CSV")
    return f"{manifest}:\n{describe(read_manifest(manifest))}"
