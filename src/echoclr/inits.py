"""Encoder initialisations of a readout (fine-tuning, probe): random, Kinetics-400, or a
pretraining ``encoder.pt`` — checked against the cache it will read; and LP-FT's start from a
probe's head."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from echoclr.data.cache import VideoCache
from echoclr.data.preprocess import check_compatible, preprocessing_of
from echoclr.errors import UserError
from echoclr.models import Classifier, build_encoder
from echoclr.weights import kinetics_encoder, load_classifier, load_encoder

INITS_WITHOUT_FILE = ("random", "kinetics")


def init_encoder(init: str, *, arch: str, width: int,
                 weights: str | Path | None = None) -> tuple[nn.Module, dict]:
    """The encoder ``init`` names (strict loading) and its description: ``encoder`` and
    ``width``, or a pretrained encoder's whole sidecar. A random init draws from torch's seed.

    Raises:
        UserError: ``weights`` (a Kinetics-400 state dict) with another init, where it would be
            ignored; a pretraining encoder file that does not exist.
    """
    if weights is not None and init != "kinetics":
        raise UserError(f"--weights {weights}: a Kinetics-400 state dict, read only with --init "
                        f"kinetics, not --init {init}; to start from a pretraining encoder give "
                        "--init RUN/encoder.pt")
    if init == "random":
        return build_encoder(arch, width=width), {"encoder": arch, "width": width}
    if init == "kinetics":
        return kinetics_encoder(arch, weights), {"encoder": arch, "width": width}
    if not Path(init).is_file():
        raise UserError(f"--init {init}: the file does not exist; give random, kinetics or the "
                        "path of a pretraining encoder.pt (RUN/encoder.pt of echoclr pretrain)")
    return load_encoder(init)


def check_init(init: str, encoder_meta: dict, cache: VideoCache) -> None:
    """A pretrained encoder reads only frames prepared as its pretraining frames were.

    Raises:
        UserError: naming both files and the differing settings (e.g. both frame sizes).
    """
    if init in INITS_WITHOUT_FILE:
        return
    try:
        check_compatible(preprocessing_of(encoder_meta, init), cache.preprocessing,
                         expected_from=init, found_from=cache.config_path,
                         fix="use a cache ingested as its pretraining cache was")
    except ValueError as err:  # the record's own message names both files and the fix
        raise UserError(str(err)) from err


def start_from_probe(model: Classifier, *, init: str, head_init: str | Path) -> None:
    """Copy the logit layer of the probe run ``head_init`` into ``model`` (LP-FT), whose
    encoder starts from ``init``.

    Raises:
        UserError: for a random init, or a probe fitted on another encoder init.
    """
    if init == "random":
        raise UserError("--head-init needs a pretrained or kinetics init: a random init's "
                        "weights are redrawn per run, so a probe's head would not fit them")
    probe_model, probe_meta = load_classifier(head_init)
    same = probe_meta["init"] == init or (
        init not in INITS_WITHOUT_FILE
        and Path(probe_meta["init"]).resolve() == Path(init).resolve())
    if not same:
        raise UserError(f"--head-init {head_init}: that probe was fitted on init "
                        f"{probe_meta['init']!r}, this run starts from {init!r}; give the "
                        "probe of the same encoder")
    if probe_model.n_outputs != model.n_outputs:
        raise UserError(f"--head-init {head_init}: that probe has {probe_model.n_outputs} "
                        f"logit(s), this run's task has {model.n_outputs}; give the probe of "
                        "the same task")
    model.set_head(probe_model.head.weight.detach(), probe_model.head.bias.detach())
