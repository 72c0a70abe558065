"""Weight files: the one place that calls ``torch.save`` and ``torch.load``.

Encoders (``encoder.pt``) and fine-tuned classifiers (``model.pt``) are plain state dicts of
tensors with a JSON sidecar that says how to rebuild them; loading is strict (every key, every
shape) and ``weights_only``; Kinetics-400 weights are read from disk, never downloaded.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import torch
from torch import nn

from echoclr.atomic import atomic_write
from echoclr.errors import UserError
from echoclr.models import TORCHVISION_ENCODERS, Classifier, build_encoder
from echoclr.valid_json import write_json


def load_weights(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    Unpickling arbitrary objects can run code, so a file that carries any (a checkpoint from an
    untrusted source, say) is refused before anything in it is called.

    Raises:
        UserError: naming the file, when it holds pickled objects other than tensors.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"{path}: refused to load: it carries pickled Python objects besides tensors, and "
            "unpickling them could run code; only plain state dicts are read") from err


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``: a failed write
    leaves the previous file as it was."""
    atomic_write(path, lambda f: torch.save(obj, f), fsync=True)


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file: the fingerprint outputs derived from a model carry."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_strict(module: nn.Module, state: dict, *, source: str | Path) -> None:
    """``load_state_dict(strict=True)`` with an error that names the mismatching keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad_shape:
        def show(keys):
            return ", ".join(keys[:8]) + (f" … (+{len(keys) - 8})" if len(keys) > 8 else "")
        raise ValueError(
            f"{source}: weights do not fit the encoder — missing keys: [{show(missing)}]; "
            f"unexpected keys: [{show(unexpected)}]; shape mismatches: [{show(bad_shape)}]")
    module.load_state_dict(state, strict=True)


def kinetics_weights_path(name: str) -> Path:
    """Where torch's cache keeps torchvision's Kinetics-400 file for ``name``."""
    url = TORCHVISION_ENCODERS[name][1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def load_kinetics_state(name: str, path: str | Path | None = None) -> dict:
    """torchvision's Kinetics-400 state dict from ``path`` or torch's cache; never downloads."""
    if name not in TORCHVISION_ENCODERS:
        raise ValueError(f"no Kinetics-400 weights exist for encoder {name!r}")
    file = Path(path) if path else kinetics_weights_path(name)
    if not file.is_file():
        url = TORCHVISION_ENCODERS[name][1].url
        raise FileNotFoundError(
            f"Kinetics-400 weights for {name} not found at {file}. This machine does not "
            f"download them: fetch {url} on a connected machine and copy it to {file} "
            f"(or pass --weights PATH).")
    return load_weights(file)


def kinetics_encoder(name: str, path: str | Path | None = None) -> nn.Module:
    """The encoder ``name`` initialised with torchvision's Kinetics-400 weights (strictly)."""
    return build_encoder(name, kinetics_state=load_kinetics_state(name, path))


def _sidecar(path: Path, what: str) -> dict:
    side = path.with_suffix(".json")
    if not path.is_file():
        raise UserError(f"{path}: the file does not exist (a {what} is {path.name} and its "
                        f"sidecar {side.name})")
    if not side.is_file():
        raise UserError(f"{path}: its sidecar {side.name} is missing, so the {what} cannot be "
                        f"rebuilt; copy it from where {path.name} was written")
    return json.loads(side.read_text())


def save_encoder(encoder: nn.Module, path: str | Path, meta: dict) -> None:
    """Write encoder weights (tensors only) and a JSON sidecar, both atomically."""
    path = Path(path)
    atomic_torch_save(encoder.state_dict(), path)
    write_json(path.with_suffix(".json"), meta)


def load_encoder(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild an encoder from ``encoder.pt`` + sidecar; keys must match exactly.

    Raises:
        ValueError: naming missing and unexpected keys when the file does not fit the encoder.
    """
    path = Path(path)
    meta = _sidecar(path, "pretrained encoder")
    state = load_weights(path)
    encoder = build_encoder(meta["encoder"], width=meta["width"])
    load_strict(encoder, state, source=path)
    return encoder, meta


def save_classifier(model: Classifier, run: str | Path, meta: dict) -> Path:
    """Write ``model.pt`` (tensors only) and ``model.json`` into a run folder; returns model.pt."""
    path = Path(run) / "model.pt"
    atomic_torch_save(model.state_dict(), path)
    write_json(path.with_suffix(".json"), meta, default=str)
    return path


def classifier_path(model: str | Path) -> Path:
    """``model.pt`` of a run folder, or the file itself."""
    path = Path(model)
    return path / "model.pt" if path.is_dir() else path


def load_classifier(model: str | Path) -> tuple[Classifier, dict]:
    """A fine-tuned classifier from ``model.pt`` + ``model.json`` (a run folder or the file), in
    eval mode and channels_last_3d memory."""
    path = classifier_path(model)
    meta = _sidecar(path, "fine-tuned model")
    state = load_weights(path)  # refuses a hostile file before the sidecar is trusted
    model = Classifier(build_encoder(meta["encoder"], width=meta["width"]),
                       dropout=meta["dropout"], n_outputs=len(meta.get("classes") or ()) or 1)
    load_strict(model, state, source=path)
    model.eval()
    return model.to(memory_format=torch.channels_last_3d), meta


def require_binary(meta: dict, model: str | Path, command: str) -> None:
    """Refuse a multi-class model (``meta["classes"]``) for a ``command`` that scores one
    probability per video.

    Raises:
        UserError: naming the model, its task and classes, and what serves it instead.
    """
    if meta.get("classes"):
        raise UserError(f"{classifier_path(model)}: a multi-class model (task "
                        f"{meta['task']!r}: {', '.join(meta['classes'])}); {command} scores "
                        "binary models only: measure it with echoclr evaluate, and fill a "
                        "manifest's view column with echoclr views --write-manifest")


def load_any_encoder(path: str | Path) -> tuple[nn.Module, dict]:
    """The encoder of a fine-tuned model (``model.pt``, or its run folder) or a pretraining
    ``encoder.pt`` (or its run folder), with its sidecar; eval mode."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").is_file() else path / "encoder.pt"
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text()) if side.is_file() else {}
    if "task" in meta:  # written by finetune
        model, meta = load_classifier(path)
        return model.encoder.eval(), meta
    encoder, meta = load_encoder(path)
    return encoder.eval(), meta
