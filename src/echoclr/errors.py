"""The user's mistakes: one exception class, caught once by the CLI.

A :class:`UserError` is a bad flag, file, column or value the user can fix; its message names
what is wrong, where (file, column, line as an editor shows it, flag) and the fix. The CLI
prints it as one line on stderr and exits with status 2. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the user's input; the message says what, where and how to fix it.

    A ``ValueError`` too, so callers that catch ``ValueError`` keep working.
    """
