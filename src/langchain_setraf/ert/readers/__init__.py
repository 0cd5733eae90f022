"""Readers for the ERT files users actually have, into one :class:`Survey`.

One module per format family (``../shared/docs/ert-reference.md`` §1):

* :mod:`.setraf`: SETRAF ``.dat``, SETRAF CSV (``Projet,Essai,ρ_a1..``) and ``freq.dat``;
* :mod:`.res2dinv`: Res2DInv index-based arrays 1-7 and the general array 11/15;
* :mod:`.unified`: pyGIMLi/BERT unified ``.dat/.ohm``;
* :mod:`.syscal`: IRIS Syscal Pro exports (Prosys II/III);
* :mod:`.xyz`: Res2DInv inverted-model XYZ;
* :mod:`.table`: plain ``x, z, ρ`` tables.

The format is sniffed here, from the content, in one place. Every reader either returns
a complete :class:`Survey` or raises :class:`ERTFormatError` naming the file, the line and
what was expected: never a partial result of a malformed file.

Size limits keep a read within a stated memory bound: a file over :data:`MAX_FILE_BYTES`
is refused from its ``stat``; one over :data:`MAX_LINES` lines or with a line over
:data:`MAX_LINE_CHARS` characters before any reader runs (the lines are counted without
building them); a survey over :data:`MAX_READINGS` readings as soon as it gets there. Any
read grows peak RSS by at most :func:`read_memory_bound` (8 bytes per byte of the file,
512 per line and per reading, plus 16 MiB: at most about 370 MiB). A well-formed measurement
row that no reader can use (a current and a potential electrode at one position, an
infinite geometric factor, a zero current) is dropped and named, with its line and the
reason, in :attr:`Survey.notes`; a file with no usable row left is refused.

Example:
    >>> from langchain_setraf.ert import load_survey
    >>> s = load_survey("examples/two_layer_wenner.dat")
    >>> s.format, s.array, s.n_electrodes
    ('res2dinv', 'wenner-alpha', 32)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from langchain_setraf.ert.readers._lines import (
    MAX_FILE_BYTES,
    MAX_LINE_CHARS,
    MAX_LINES,
    MAX_READINGS,
    fields,
    line_count,
    read_memory_bound,
    read_text,
)
from langchain_setraf.ert.readers.res2dinv import read_res2dinv
from langchain_setraf.ert.readers.setraf import read_setraf_csv, read_setraf_dat, read_setraf_freq
from langchain_setraf.ert.readers.syscal import is_syscal_header, read_syscal
from langchain_setraf.ert.readers.table import read_xz_rho
from langchain_setraf.ert.readers.unified import read_unified
from langchain_setraf.ert.readers.xyz import read_xyz
from langchain_setraf.ert.survey import ERTFormatError, Survey

__all__ = [
    "FORMATS",
    "MAX_FILE_BYTES",
    "MAX_LINES",
    "MAX_LINE_CHARS",
    "MAX_READINGS",
    "line_count",
    "load_survey",
    "read_memory_bound",
    "sniff_format",
]

#: Format name → reader ``(path, text) -> Survey``.
FORMATS: dict[str, Callable[[Path, str], Survey]] = {
    "res2dinv": read_res2dinv,
    "unified": read_unified,
    "res2dinv-xyz": read_xyz,
    "setraf-dat": read_setraf_dat,
    "setraf-csv": read_setraf_csv,
    "setraf-freq": read_setraf_freq,
    "syscal-csv": read_syscal,
    "xz-rho": read_xz_rho,
}

_COUNT = re.compile(r"\d+\s*(#.*)?")


def _head(text: str, skip: str | None = None, limit: int = 8) -> list[str]:
    """The first ``limit`` non-blank stripped lines (those starting with ``skip`` left out)."""
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not (skip and line.startswith(skip)):
            out.append(line)
            if len(out) >= limit:
                break
    return out


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _looks_like_res2dinv(head: list[str]) -> bool:
    """Title, then a single spacing number, then a single array code (``7``, ``1R``)."""
    if len(head) < 3:
        return False
    spacing, code = fields(head[1]), fields(head[2])
    return (
        len(spacing) == 1
        and _is_number(spacing[0])
        and len(code) == 1
        and code[0].rstrip("RLrl").isdigit()
    )


def sniff_format(path: str | os.PathLike[str], text: str) -> str:
    """Guess a survey file's format from its content (and name).

    Raises:
        ERTFormatError: No known format matches.
    """
    p = Path(path)
    head = _head(text)
    if not head:
        raise ERTFormatError(p, 1, "expected survey data, found an empty file")
    first = head[0]
    low = first.lower()
    if first.startswith("/"):
        return "res2dinv-xyz"
    if re.match(r"projet\s*[,;\t]\s*essai", low):
        return "setraf-csv"
    if low.split()[:1] == ["survey-point"]:
        return "setraf-dat"
    if is_syscal_header(first):
        return "syscal-csv"
    if "freq" in p.name.lower() and ("," in first or ";" in first):
        return "setraf-freq"
    if _looks_like_res2dinv(_head(text, skip=";")):
        return "res2dinv"
    uncommented = _head(text, skip="#", limit=1)
    if uncommented and _COUNT.fullmatch(uncommented[0]):
        return "unified"  # a sensor count, possibly after a comment block
    data_line = head[1] if re.search(r"[A-Za-z]", first) and len(head) > 1 else first
    if len(fields(data_line)) == 3 and all(_is_number(t) for t in fields(data_line)):
        return "xz-rho"
    raise ERTFormatError(
        p, 1, "could not recognise the survey format; expected one of: " + ", ".join(FORMATS)
    )


def load_survey(path: str | os.PathLike[str], format: str | None = None) -> Survey:
    """Read any supported ERT file into a :class:`Survey`.

    Args:
        path: The file.
        format: Force a format (a key of :data:`FORMATS`); sniffed from content when
            ``None``.

    Returns:
        A complete :class:`Survey`.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: ``format`` is not a key of :data:`FORMATS`.
        ERTFormatError: The content does not match the format (names file, line and what
            was expected), or the file is over a size limit (names the file, its size and
            the limit: :data:`MAX_FILE_BYTES`, :data:`MAX_LINES`, :data:`MAX_LINE_CHARS`,
            :data:`MAX_READINGS`).

    Example:
        >>> s = load_survey("examples/two_layer_wenner.dat")
        >>> s.n_data == len(s.values) > 0
        True
    """
    p = Path(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown survey format {format!r}; expected one of: {', '.join(FORMATS)}")
    text = read_text(p)
    fmt = format or sniff_format(p, text)
    reader = FORMATS[fmt]
    try:
        survey = reader(p, text)
    except ERTFormatError:
        raise
    except (ValueError, IndexError, KeyError, ZeroDivisionError, OverflowError) as exc:
        # a reader bug must still surface as a format error that names the file
        raise ERTFormatError(p, None, f"could not read as {fmt}: {exc}") from exc
    if not survey.cells and not survey.data:
        raise ERTFormatError(p, None, "expected at least one resistivity value")
    return survey
