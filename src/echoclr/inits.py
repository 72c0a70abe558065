"""Encoder initialisations of a readout (fine-tuning, probe): random, Kinetics-400, or a
pretraining ``encoder.pt`` — checked against the cache it will read."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from echoclr.data.cache import VideoCache
from echoclr.data.preprocess import check_compatible, preprocessing_of
from echoclr.models import build_encoder
from echoclr.weights import kinetics_encoder, load_encoder

INITS_WITHOUT_FILE = ("random", "kinetics")


def init_encoder(init: str, *, arch: str, width: int,
                 weights: str | Path | None = None) -> tuple[nn.Module, dict]:
    """The encoder ``init`` names (strict loading) and its description: ``encoder`` and
    ``width``, or a pretrained encoder's whole sidecar. A random init draws from torch's seed."""
    if init == "random":
        return build_encoder(arch, width=width), {"encoder": arch, "width": width}
    if init == "kinetics":
        return kinetics_encoder(arch, weights), {"encoder": arch, "width": width}
    return load_encoder(init)


def check_init(init: str, encoder_meta: dict, cache: VideoCache) -> None:
    """A pretrained encoder reads only frames prepared as its pretraining frames were.

    Raises:
        ValueError: naming both files and the differing settings (e.g. both frame sizes).
    """
    if init not in INITS_WITHOUT_FILE:
        check_compatible(preprocessing_of(encoder_meta, init), cache.preprocessing,
                         expected_from=init, found_from=cache.config_path,
                         fix="use a cache ingested as its pretraining cache was")
