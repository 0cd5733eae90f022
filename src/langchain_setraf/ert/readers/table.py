"""Plain ``x, z, ρ`` tables: model sections and vertical logs (direct-push, borehole).

A header is optional (``x, z|depth|elevation, rho``). Without ``depth`` in the header, z
is an elevation when any value is positive (depth from the highest point), else a
negative depth. Rows with a non-positive ρ (no-data markers) are dropped with a note.
"""

from __future__ import annotations

import re
from pathlib import Path

from langchain_setraf.ert.i18n import Note
from langchain_setraf.ert.readers._lines import Lines, fields
from langchain_setraf.ert.readers._quadrupoles import Dropped
from langchain_setraf.ert.survey import Cell, ERTFormatError, Survey

__all__ = ["read_xz_rho"]


def read_xz_rho(path: Path, text: str) -> Survey:
    """Read an ``x z rho`` table."""
    lines = Lines(path, text, comment="#")
    survey = Survey(path=path, format="xz-rho", title=path.stem, value_kind="resistivity")
    first = lines.peek()
    if first is None:
        raise ERTFormatError(path, 1, "expected rows 'x z rho', found an empty file")
    depth_named = False
    if re.search(r"[A-Za-z]", first[1]) and not re.fullmatch(r"[-+0-9.eE\s,;]+", first[1]):
        ln, header = lines.next("a header")
        cols = [c.lower() for c in fields(header)]
        if len(cols) < 3 or cols[0] != "x" or cols[1] not in ("z", "depth", "elevation"):
            raise ERTFormatError(
                path, ln, f"expected a header 'x, z (or depth), rho', found {header!r}"
            )
        depth_named = cols[1] == "depth"
    raw: list[tuple[float, float, float]] = []
    dropped = Dropped(what="row(s)")
    while lines.peek() is not None:
        ln, nums = lines.numbers("a row 'x z rho'", 3)
        if nums[2] <= 0:  # a no-data marker (0, -9999) in a log or model export
            dropped.add(ln, Note("reader.not_positive", rho=f"{nums[2]:g}"))
            continue
        raw.append((nums[0], nums[1], nums[2]))
    if not raw and not dropped.rows:
        raise ERTFormatError(path, lines.last_line, "expected at least one row 'x z rho'")
    dropped.check(survey, len(raw))
    zs = [r[1] for r in raw]
    if depth_named:
        survey.cells = [Cell(x, abs(z), rho) for x, z, rho in raw]
    elif max(zs) <= 0:
        survey.cells = [Cell(x, -z, rho) for x, z, rho in raw]
    else:
        top = max(zs)
        survey.cells = [Cell(x, top - z, rho) for x, z, rho in raw]
        survey.notes.append(Note("reader.elevation", top=f"{top:g}"))
    if len({x for x, _, _ in raw}) == 1:
        survey.depth_kind = "log"
        survey.notes.append(Note("reader.vertical_log", x=f"{raw[0][0]:g}"))
    else:
        survey.depth_kind = "model"
    return survey
