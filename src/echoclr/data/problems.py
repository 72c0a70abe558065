"""Problems found in a manifest, and the one error that lists them so a person can act on them.

Each problem names the line a text editor shows (the header is line 1, so data row k is line
k + 1). Many problems of one kind in one column (10,000 duplicate rows, a column of yes/no
labels) are summarised as one line: how many, the first lines, and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from echoclr.errors import UserError

FIRST_LINES = 5  # line numbers a summary names before "and N more"
HINTS = {
    "non-binary label": "use 1 and 0 (yes/true → 1, no/false → 0), blank for unknown",
    "duplicate path": "list each file once",
    "same content": "list each file once, or give the copies one patient so they share a split",
    "blank": "fill in the id",
    "outside": "add folders with --allowed-roots DIR ... or accept any path with --allow-outside",
}
SUMMARIES = {  # what a repeated kind says, after the count
    "non-binary label": "labels are not 0, 1 or blank",
    "duplicate path": "rows name a file an earlier row names",
    "same content": "rows hold the same content as an earlier row",
    "outside": "rows name a file outside the allowed roots",
    "blank": "rows leave it blank",
}
FILE_KIND = "file"  # a row whose file is missing or unreadable: ingest skips it, never stops


@dataclass(frozen=True)
class ManifestProblem:
    """One problem; ``line`` is the CSV line as an editor shows it (None: the whole file);
    ``kind`` groups problems of one sort for the summary; ``value`` is what the summary quotes."""

    line: int | None
    column: str | None
    reason: str
    kind: str = ""
    value: str | None = None

    def __str__(self) -> str:
        where = "manifest" if self.line is None else f"line {self.line}"
        col = f" [{self.column}]" if self.column else ""
        return f"{where}{col}: {self.reason}"


class ManifestError(UserError):
    """Raised with every problem of a manifest: one line each, or one per kind and column when
    a kind repeats."""

    def __init__(self, source: str | Path, problems: list[ManifestProblem]):
        self.source = str(source)
        self.problems = problems
        lines = "\n".join(f"  - {line}" for line in summarise(problems))
        super().__init__(f"{source}: {len(problems)} problem(s) in the manifest:\n{lines}")


def line_of(index: int) -> int:
    """The editor line of data row ``index`` (0-based, header excluded)."""
    return index + 2


def list_lines(lines: list[int]) -> str:
    """"lines 3, 4, 5, 6, 7 and 9,994 more"."""
    shown = ", ".join(str(x) for x in lines[:FIRST_LINES])
    more = f" and {len(lines) - FIRST_LINES:,} more" if len(lines) > FIRST_LINES else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"


def summarise(problems: list[ManifestProblem]) -> list[str]:
    """One line per problem, except that a kind repeated in a column becomes one line with the
    count, the first lines, the values quoted and the fix; order of first appearance."""
    groups: dict[tuple[str, str | None], list[ManifestProblem]] = {}
    for p in problems:
        groups.setdefault((p.kind or f"#{id(p)}", p.column), []).append(p)
    out = []
    for (kind, column), group in groups.items():
        hint = HINTS.get(kind, "")
        if len(group) == 1:
            out.append(f"{group[0]}" + (f"; {hint}" if hint and hint not in group[0].reason
                                        else ""))
            continue
        values = sorted({p.value for p in group if p.value is not None})
        quoted = f" ({', '.join(values[:FIRST_LINES])}{', …' if len(values) > FIRST_LINES else ''})" \
            if values else ""
        lines = [p.line for p in group if p.line is not None]
        what = SUMMARIES.get(kind, f"rows: {kind}")
        out.append(f"[{column}]: {len(group):,} {what}{quoted}, {list_lines(lines)}"
                   + (f"; {hint}" if hint else ""))
    return out
