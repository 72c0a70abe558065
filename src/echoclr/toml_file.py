"""Reading a user's TOML file: a missing or malformed file is the user's to fix, not a bug."""

from __future__ import annotations

import tomllib
from pathlib import Path

from echoclr.errors import UserError


def read_toml(path: str | Path, flag: str) -> dict:
    """The table a TOML file holds.

    Args:
        path: the file.
        flag: how the user named it (``--config-file``, ``CONFIG``), for the message.

    Raises:
        UserError: the file does not exist or is not valid TOML (with line and column).
    """
    if not Path(path).is_file():
        raise UserError(f"{flag} {path}: the file does not exist")
    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML ({err})") from err
