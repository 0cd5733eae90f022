"""The SETRAF app's own formats: CSV ``Projet,Essai,ρ_a1..``, ``.dat`` and ``freq.dat``.

Depths follow the app's conventions (``depth_kind = "setraf"``), not a computed depth of
investigation.
"""

from __future__ import annotations

import re
from pathlib import Path

from langchain_setraf.ert.i18n import Note
from langchain_setraf.ert.readers._lines import Lines, check_readings, csv_rows, to_float
from langchain_setraf.ert.readers._quadrupoles import Dropped
from langchain_setraf.ert.survey import Cell, ERTFormatError, Survey

__all__ = ["read_setraf_csv", "read_setraf_dat", "read_setraf_freq"]


def read_setraf_csv(path: Path, text: str) -> Survey:
    """Read the SETRAF CSV (one row per test, one column per reading)."""
    rows = csv_rows(path, text)
    first = next(rows, None)
    if first is None:
        raise ERTFormatError(path, 1, "expected the header 'Projet,Essai,ρ_a1,…'")
    ln, header = first
    if len(header) < 3 or header[0].lower() != "projet" or header[1].lower() != "essai":
        raise ERTFormatError(path, ln, "expected the header 'Projet,Essai,ρ_a1,…'")
    n_read = len(header) - 2
    for j, h in enumerate(header[2:], start=1):
        if not re.fullmatch(rf"(ρ|rho)_?a_?{j}", h, re.I):
            raise ERTFormatError(path, ln, f"expected column ρ_a{j}, found {h!r}")
    survey = Survey(path=path, format="setraf-csv", value_kind="apparent resistivity")
    survey.depth_kind = "setraf"
    survey.spacing = 1.0
    projects = []
    header_ln = ln
    dropped = Dropped(what="reading(s)")
    for t, (ln, row) in enumerate(rows):
        if len(row) != len(header):
            raise ERTFormatError(
                path,
                ln,
                f"expected {len(header)} fields (Projet, Essai, {n_read} readings), "
                f"found {len(row)}",
            )
        projects.append(row[0])
        for j, token in enumerate(row[2:], start=1):
            rho = to_float(path, ln, token, f"ρ_a{j}")
            if rho <= 0:
                dropped.add(ln, Note("reader.not_positive_for", column=f"ρ_a{j}", rho=f"{rho:g}"))
                continue
            check_readings(path, ln, len(survey.cells) + 1)
            survey.cells.append(Cell(x=float(t), depth=0.5 * j, rho=rho))
    if not projects:
        raise ERTFormatError(path, header_ln, "expected at least one data row after the header")
    dropped.check(survey, len(survey.cells))
    survey.title = ", ".join(dict.fromkeys(projects))
    survey.electrodes = [(float(i), 0.0) for i in range(n_read)]
    survey.notes.append(Note("reader.setraf_tests", tests=len(projects), readings=n_read))
    return survey


def read_setraf_dat(path: Path, text: str) -> Survey:
    """Read the SETRAF ``.dat`` (``survey-point depth data project``)."""
    lines = Lines(path, text)
    ln, header = lines.next("the header 'survey-point depth data project'")
    if [h.lower() for h in header.split()] != ["survey-point", "depth", "data", "project"]:
        raise ERTFormatError(path, ln, "expected the header 'survey-point depth data project'")
    survey = Survey(path=path, format="setraf-dat", value_kind="resistivity", depth_kind="setraf")
    projects = []
    dropped = Dropped()
    while lines.peek() is not None:
        ln, row = lines.next("a data row")
        tok = row.split()
        if len(tok) != 4:
            raise ERTFormatError(
                path, ln, f"expected 4 columns (survey-point depth data project), found {len(tok)}"
            )
        x = to_float(path, ln, tok[0], "survey-point")
        depth = to_float(path, ln, tok[1], "depth")
        rho = to_float(path, ln, tok[2], "data (Ω·m)")
        projects.append(tok[3])
        if rho <= 0:
            dropped.add(ln, Note("reader.not_positive_for", column="data", rho=f"{rho:g}"))
            continue
        survey.cells.append(Cell(x=x, depth=abs(depth), rho=rho))
    if not survey.cells and not dropped.rows:
        raise ERTFormatError(path, ln, "expected at least one data row")
    dropped.check(survey, len(survey.cells))
    survey.title = "project " + ", ".join(dict.fromkeys(projects))
    return survey


def read_setraf_freq(path: Path, text: str) -> Survey:
    """SETRAF ``freq.dat``: project, survey point, then one column per frequency (MHz).

    Depth = 1000 / f m (the app's convention); values are resistivities in Ω·m.
    """
    rows = csv_rows(path, text)
    first = next(rows, None)
    if first is None:
        raise ERTFormatError(path, 1, "expected columns project, survey point, frequencies…")
    ln, header = first
    if len(header) < 3:
        raise ERTFormatError(path, ln, "expected columns project, survey point, frequencies…")
    freqs = []
    for h in header[2:]:
        m = re.search(r"[-+]?\d+(?:\.\d+)?", h)
        if not m or float(m.group()) <= 0:
            raise ERTFormatError(path, ln, f"expected a frequency (MHz) column header, found {h!r}")
        freqs.append(float(m.group()))
    survey = Survey(path=path, format="setraf-freq", value_kind="resistivity", depth_kind="setraf")
    dropped = Dropped(what="reading(s)")
    title: str | None = None
    for ln, row in rows:
        if len(row) != len(header):
            raise ERTFormatError(path, ln, f"expected {len(header)} fields, found {len(row)}")
        if title is None:
            title = row[0]
        x = to_float(path, ln, row[1], "survey point")
        for f, token in zip(freqs, row[2:], strict=True):
            rho = to_float(path, ln, token, f"value at {f} MHz")
            if rho <= 0:
                dropped.add(ln, Note("reader.not_positive_at", f=f"{f:g}", rho=f"{rho:g}"))
                continue
            check_readings(path, ln, len(survey.cells) + 1)
            survey.cells.append(Cell(x=x, depth=1000.0 / f, rho=rho))
    if not survey.cells and not dropped.rows:
        raise ERTFormatError(path, ln, "expected at least one data row")
    dropped.check(survey, len(survey.cells))
    survey.title = title or path.stem
    survey.notes.append(Note("reader.setraf_freq"))
    return survey
