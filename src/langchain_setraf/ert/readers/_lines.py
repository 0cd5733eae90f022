"""Line and number helpers shared by the readers: every failure is an ERTFormatError."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from pathlib import Path

from langchain_setraf.ert.survey import ERTFormatError

__all__ = [
    "MAX_FILE_BYTES",
    "NOT_FINITE",
    "Lines",
    "csv_rows",
    "fields",
    "min_step",
    "positive",
    "read_text",
    "sniff_delimiter",
    "to_float",
    "to_floats",
    "to_int",
]

#: Largest survey file the readers accept (a field line is a few MB at most).
MAX_FILE_BYTES = 200 * 1024 * 1024

_SPLIT = re.compile(r"[\s,;]+")

#: Reason given when a measurement row is dropped for a ``nan``/``inf`` value.
NOT_FINITE = "a value is not a finite number (nan or inf)"


def fields(line: str) -> list[str]:
    """Tokens of a line separated by blanks, tabs, commas or semicolons."""
    return [f for f in _SPLIT.split(line.strip()) if f]


def to_float(path: Path, lineno: int | None, token: str, what: str, finite: bool = True) -> float:
    """``token`` as a float, or an ERTFormatError naming ``what``.

    Args:
        finite: Refuse ``nan`` and ``inf`` too (else they are returned, for the caller
            to drop the measurement row that holds them).
    """
    try:
        value = float(token)
    except ValueError:
        raise ERTFormatError(
            path, lineno, f"expected a number for {what}, found {token!r}"
        ) from None
    if finite and not math.isfinite(value):
        raise ERTFormatError(path, lineno, f"expected a finite number for {what}, found {token!r}")
    return value


def to_int(path: Path, lineno: int | None, token: str, what: str) -> int:
    """``token`` as an integer (``2`` or ``2.0``), or an ERTFormatError naming ``what``."""
    value = to_float(path, lineno, token, what)
    if value != int(value):
        raise ERTFormatError(path, lineno, f"expected an integer for {what}, found {token!r}")
    return int(value)


def to_floats(
    path: Path,
    lineno: int,
    line: str,
    what: str,
    count: int | Iterable[int],
    finite: bool = True,
) -> list[float]:
    """All tokens of ``line`` as floats; their number must be one of ``count``.

    ``finite=False`` lets ``nan``/``inf`` through (see :func:`to_float`).
    """
    tokens = fields(line)
    allowed = (count,) if isinstance(count, int) else tuple(count)
    if len(tokens) not in allowed:
        want = " or ".join(str(c) for c in allowed) if len(allowed) <= 4 else "a few"
        raise ERTFormatError(
            path, lineno, f"expected {want} numbers for {what}, found {len(tokens)}: {line!r}"
        )
    return [to_float(path, lineno, t, what, finite) for t in tokens]


def positive(path: Path, lineno: int | None, value: float, what: str) -> float:
    """``value`` if it is > 0, else an ERTFormatError."""
    if value <= 0:
        raise ERTFormatError(path, lineno, f"expected a positive {what}, found {value}")
    return value


def min_step(xs: Iterable[float]) -> float | None:
    """Smallest distance between distinct positions (the unit spacing of a grid)."""
    grid = sorted(set(xs))
    steps = [round(b - a, 6) for a, b in zip(grid, grid[1:], strict=False)]
    return min(steps) if steps else None


def read_text(path: Path) -> str:
    """The file's text (UTF-8, with or without BOM, else cp1252/latin-1).

    Raises:
        FileNotFoundError: No such file.
        ERTFormatError: A directory, a file over :data:`MAX_FILE_BYTES`, or binary data.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"survey file not found: {path}") from None
    if path.is_dir():
        raise ERTFormatError(path, None, "expected a survey file, found a directory")
    if size > MAX_FILE_BYTES:
        raise ERTFormatError(path, None, f"file of {size} bytes is too large for a survey")
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise ERTFormatError(path, 1, "expected a text file, found binary data (NUL bytes)")
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def sniff_delimiter(text: str) -> str:
    """The CSV delimiter (``,`` ``;`` or tab) the first non-blank line uses most."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def csv_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """Non-empty CSV rows with their line numbers (delimiter from :func:`sniff_delimiter`)."""
    delimiter = sniff_delimiter(text)
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        return [(reader.line_num, [c.strip() for c in row]) for row in reader if any(row)]
    except csv.Error as exc:
        raise ERTFormatError(path, None, f"expected CSV: {exc}") from None


class Lines:
    """Logical (non-blank) lines with their 1-based physical line numbers.

    Args:
        path: The file (for error messages).
        text: Its content.
        comment: Lines starting with this prefix are skipped.
    """

    def __init__(self, path: Path, text: str, comment: str | None = None) -> None:
        self.path = path
        self.items: list[tuple[int, str]] = []
        for i, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if comment and line.startswith(comment):
                continue
            if line:
                self.items.append((i, line))
        self.pos = 0

    def error(self, expected: str, line: int | None = None) -> ERTFormatError:
        """An ERTFormatError at ``line`` (default: the current line)."""
        if line is None:
            line = self.items[self.pos][0] if self.pos < len(self.items) else self.last_line
        return ERTFormatError(self.path, line, expected)

    @property
    def last_line(self) -> int | None:
        return self.items[-1][0] if self.items else None

    @property
    def remaining(self) -> int:
        return len(self.items) - self.pos

    def peek(self) -> tuple[int, str] | None:
        """The next line without consuming it (``None`` at the end)."""
        return self.items[self.pos] if self.pos < len(self.items) else None

    def peek_matches(self, pattern: str) -> bool:
        """Whether the next line matches ``pattern`` (regex, case-insensitive, at start)."""
        item = self.peek()
        return item is not None and re.match(pattern, item[1], re.I) is not None

    def next(self, what: str) -> tuple[int, str]:
        """Consume the next line, or raise naming ``what`` at the end of the file."""
        if self.pos >= len(self.items):
            raise ERTFormatError(self.path, self.last_line, f"expected {what}, found end of file")
        item = self.items[self.pos]
        self.pos += 1
        return item

    def numbers(
        self, what: str, count: int | Iterable[int], finite: bool = True
    ) -> tuple[int, list[float]]:
        """Consume a line of ``count`` numbers (``finite=False``: see :func:`to_float`)."""
        lineno, line = self.next(what)
        return lineno, to_floats(self.path, lineno, line, what, count, finite)

    def integer(self, what: str) -> tuple[int, int]:
        """Consume a line whose first field is an integer (the rest of it is ignored)."""
        lineno, line = self.next(what)
        tokens = fields(line)
        return lineno, to_int(self.path, lineno, tokens[0] if tokens else line, what)

    def single_integer(self, what: str) -> tuple[int, int]:
        """Consume a line holding exactly one integer."""
        lineno, line = self.next(what)
        tokens = fields(line)
        if len(tokens) != 1:
            raise ERTFormatError(
                self.path, lineno, f"expected {what} (one integer), found {line!r}"
            )
        return lineno, to_int(self.path, lineno, tokens[0], what)
