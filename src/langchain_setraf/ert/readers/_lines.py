"""Line and number helpers shared by the readers: every failure is an ERTFormatError."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from langchain_setraf.ert.i18n import Note
from langchain_setraf.ert.survey import ERTFormatError

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_LINES",
    "MAX_LINE_CHARS",
    "MAX_READINGS",
    "NOT_FINITE",
    "READ_MEMORY_BASE",
    "READ_MEMORY_PER_BYTE",
    "READ_MEMORY_PER_ITEM",
    "Lines",
    "check_readings",
    "check_size",
    "csv_rows",
    "fields",
    "line_count",
    "min_step",
    "positive",
    "read_memory_bound",
    "read_text",
    "sniff_delimiter",
    "to_float",
    "to_floats",
    "to_int",
]

#: Largest survey file the readers accept, in bytes. A real field line is a few MB at most
#: (a Syscal export of 20,000 readings with 30 columns is about 6 MB). Checked with
#: ``stat`` before anything is read.
MAX_FILE_BYTES = 32 * 1024 * 1024
#: Most lines (readings, electrodes, headers) a survey file may hold. Real 2-D lines have
#: at most tens of thousands of readings; every line read costs a few hundred bytes of
#: Python objects, so this bounds what a line-based reader builds. Counted on the text
#: with :meth:`str.count` (no per-line object) before any reader runs.
MAX_LINES = 100_000
#: Most readings (data and cells) one survey may hold; bounds the readers that make many
#: values of one line (SETRAF CSV and ``freq.dat``: one column per reading).
MAX_READINGS = 100_000
#: Longest line a survey file may hold, in characters (the widest real rows, SETRAF CSV
#: with 50 ρa columns or a Syscal export, are a few hundred).
MAX_LINE_CHARS = 64 * 1024
#: The memory bound :func:`~langchain_setraf.ert.load_survey` keeps to: reading a file
#: grows the process's peak RSS by at most ``READ_MEMORY_PER_BYTE`` bytes per byte of the
#: file, plus ``READ_MEMORY_PER_ITEM`` bytes per line and per reading, plus
#: ``READ_MEMORY_BASE`` (see :func:`read_memory_bound`). With the limits above that is at
#: most ``read_memory_bound(MAX_FILE_BYTES, MAX_LINES, MAX_READINGS)`` (about 370 MiB) for
#: any file; a file refused for its line count costs its text alone.
READ_MEMORY_PER_BYTE = 8
READ_MEMORY_PER_ITEM = 512
READ_MEMORY_BASE = 16 * 1024 * 1024
#: Characters :meth:`str.splitlines` ends a line at (besides ``\n`` and ``\r``).
_OTHER_LINE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

_SPLIT = re.compile(r"[\s,;]+")

#: Reason given when a measurement row is dropped for a ``nan``/``inf`` value.
NOT_FINITE = Note("reader.not_finite")


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


def read_memory_bound(size: int, lines: int, readings: int) -> int:
    """The most a survey read may grow peak RSS by, in bytes (the stated bound).

    Args:
        size: The file's size in bytes.
        lines: Its number of lines.
        readings: The readings (data + cells) of the survey read from it.
    """
    return (
        READ_MEMORY_PER_BYTE * size + READ_MEMORY_PER_ITEM * (lines + readings) + (READ_MEMORY_BASE)
    )


def check_readings(path: Path, lineno: int | None, count: int) -> None:
    """Refuse a survey once it would hold more than :data:`MAX_READINGS` readings."""
    if count > MAX_READINGS:
        raise ERTFormatError(
            path,
            lineno,
            f"more than {MAX_READINGS} readings (MAX_READINGS), the most one survey may "
            "hold; a real 2-D line has at most tens of thousands: split the file",
        )


def line_count(text: str) -> int:
    """How many lines :meth:`str.splitlines` would give, counted without building them."""
    if not text:
        return 0
    breaks = text.count("\n") + text.count("\r") - text.count("\r\n")
    breaks += sum(text.count(c) for c in _OTHER_LINE_BREAKS)
    ends_with_break = text.endswith(("\n", "\r", *_OTHER_LINE_BREAKS))
    return breaks + (0 if ends_with_break else 1)


def check_size(path: Path, text: str, size: int) -> None:
    """Refuse text over :data:`MAX_LINES` lines or with a line over :data:`MAX_LINE_CHARS`.

    The line count is taken with :meth:`str.count` (no per-line object), so a file of
    millions of short rows is refused at the cost of its text alone.

    Args:
        path: The file (for the message).
        text: Its decoded content.
        size: Its size in bytes (for the message).

    Raises:
        ERTFormatError: Names the file, its size, its line count (or the long line) and
            the limit.
    """
    lines = line_count(text)
    if lines > MAX_LINES:
        raise ERTFormatError(
            path,
            None,
            f"file of {size} bytes has {lines} lines, over the limit of {MAX_LINES} lines "
            f"(MAX_LINES) a survey file may hold; a real 2-D line has at most tens of "
            "thousands of readings: split the file",
        )
    for lineno, line in enumerate(text.splitlines(), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise ERTFormatError(
                path,
                lineno,
                f"line of {len(line)} characters, over the limit of {MAX_LINE_CHARS} "
                "(MAX_LINE_CHARS) for one line of a survey file",
            )


def read_text(path: Path) -> str:
    """The file's text (UTF-8, with or without BOM, else cp1252/latin-1), within the limits.

    The size is checked before reading (:data:`MAX_FILE_BYTES`), the line count and line
    length before any reader builds anything (:func:`check_size`).

    Raises:
        FileNotFoundError: No such file.
        ERTFormatError: A directory, a file over :data:`MAX_FILE_BYTES`,
            :data:`MAX_LINES` or :data:`MAX_LINE_CHARS`, or binary data; names the file,
            its size and the limit.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"survey file not found: {path}") from None
    if path.is_dir():
        raise ERTFormatError(path, None, "expected a survey file, found a directory")
    if size > MAX_FILE_BYTES:
        raise ERTFormatError(
            path,
            None,
            f"file of {size} bytes is over the limit of {MAX_FILE_BYTES} bytes "
            f"(MAX_FILE_BYTES, {MAX_FILE_BYTES // 2**20} MiB) for a survey file",
        )
    with path.open("rb") as fh:
        raw = fh.read(MAX_FILE_BYTES + 1)  # a file that grew since stat is still bounded
    if len(raw) > MAX_FILE_BYTES:
        raise ERTFormatError(
            path, None, f"file grew over the limit of {MAX_FILE_BYTES} bytes while being read"
        )
    if b"\x00" in raw[:4096]:
        raise ERTFormatError(path, 1, "expected a text file, found binary data (NUL bytes)")
    text, n_bytes = _decode(raw), len(raw)
    del raw
    check_size(path, text, n_bytes)
    return text


def _decode(raw: bytes) -> str:
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


def _physical_lines(text: str) -> Iterator[str]:
    """``text`` split after each ``\\n`` (ends kept), one line at a time (no list, no copy)."""
    start, end = 0, len(text)
    while start < end:
        stop = text.find("\n", start)
        if stop < 0:
            yield text[start:]
            return
        yield text[start : stop + 1]
        start = stop + 1


def csv_rows(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """Non-empty CSV rows with their line numbers (delimiter from :func:`sniff_delimiter`).

    Rows come one at a time, so a reader that keeps only what it needs of each row holds
    no per-cell string of the whole file at once.

    Raises:
        ERTFormatError: Malformed CSV (while iterating).
    """
    delimiter = sniff_delimiter(text)
    reader = csv.reader(_physical_lines(text), delimiter=delimiter)
    try:
        for row in reader:
            if any(row):
                yield reader.line_num, [c.strip() for c in row]
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
