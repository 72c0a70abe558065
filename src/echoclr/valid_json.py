"""JSON that is valid JSON: every file the package writes goes through :func:`json_text`.

``json.dumps`` writes NaN and infinities as the bare tokens ``NaN``/``Infinity``, which strict
parsers (JavaScript's ``JSON.parse``, jq, most languages' libraries) refuse; here they become
``null``, and numpy scalars plain numbers. Torch-free, so the data layer can use it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from echoclr.atomic import atomic_write_text


def jsonable(obj):
    """``obj`` with non-finite floats as None, numpy scalars and arrays as Python values and
    tuples as lists, recursively (dict keys are kept)."""
    if isinstance(obj, dict):
        return {key: jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(obj, *, indent: int | None = 2, default=None, sort_keys: bool = False) -> str:
    """``json.dumps`` of :func:`jsonable` ``(obj)``, refusing any NaN left (``allow_nan=False``);
    ``default`` converts other objects (e.g. ``str`` for paths)."""
    return json.dumps(jsonable(obj), indent=indent, default=default, sort_keys=sort_keys,
                      allow_nan=False)


def write_json(path: str | Path, obj, *, indent: int | None = 2, default=None) -> None:
    """Write :func:`json_text` ``(obj)`` to ``path`` atomically."""
    atomic_write_text(path, json_text(obj, indent=indent, default=default))
