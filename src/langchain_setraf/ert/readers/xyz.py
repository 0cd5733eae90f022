"""Res2DInv inverted-model XYZ exports: model blocks and their sensitivity section.

Sections start at ``/`` header lines (``../shared/docs/ert-reference.md`` §1.6); they are
found by their header text, not their position: ``/ X Depth Resistivity ...`` (model
blocks, depth negative) and the section whose header names ``Sensitivity``.
"""

from __future__ import annotations

import re
from pathlib import Path

from langchain_setraf.ert.readers._lines import min_step, positive, to_float, to_int
from langchain_setraf.ert.survey import Cell, ERTFormatError, Survey

__all__ = ["read_xyz"]


def read_xyz(path: Path, text: str) -> Survey:
    """Read a Res2DInv XYZ model export."""
    sections: list[tuple[list[tuple[int, str]], list[tuple[int, list[str]]]]] = []
    headers: list[tuple[int, str]] = []
    rows: list[tuple[int, list[str]]] = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/"):
            if rows:
                sections.append((headers, rows))
                headers, rows = [], []
            headers.append((i, line[1:].strip()))
        else:
            rows.append((i, line.split()))
    if rows or headers:
        sections.append((headers, rows))
    survey = Survey(path=path, format="res2dinv-xyz", value_kind="resistivity", depth_kind="model")
    declared: int | None = None
    model_rows: list[tuple[int, list[str]]] | None = None
    sens_rows: list[tuple[int, list[str]]] | None = None
    for hdrs, data in sections:
        text_h = " ".join(h for _, h in hdrs)
        for ln, h in hdrs:
            if m := re.match(r"name of survey line is\s*(.*)", h, re.I):
                survey.title = m.group(1).strip()
            if m := re.match(r"number of blocks is\s*(\S+)", h, re.I):
                declared = to_int(path, ln, m.group(1), "the number of blocks")
            if m := re.match(r"percent rms error for this model is\s*(\S+)", h, re.I):
                survey.rms_percent = to_float(path, ln, m.group(1), "the RMS error")
        col_line = hdrs[-1][1] if hdrs else ""
        if model_rows is None and re.search(r"\bX\s+Depth\s+Resistivity", col_line):
            model_rows = data
        elif sens_rows is None and "Sensitivity" in text_h and "Depth" in col_line:
            sens_rows = data
    if model_rows is None:
        raise ERTFormatError(
            path, None, "expected a '/ X Depth Resistivity ...' section of model blocks"
        )
    cells = []
    for ln, tok in model_rows:
        if len(tok) < 3:
            raise ERTFormatError(path, ln, f"expected X Depth Resistivity columns, found {tok}")
        x = to_float(path, ln, tok[0], "block x")
        depth = abs(to_float(path, ln, tok[1], "block depth"))
        rho = positive(path, ln, to_float(path, ln, tok[2], "block resistivity"), "resistivity")
        ip = to_float(path, ln, tok[4], "block IP") if len(tok) >= 5 else None
        cells.append(Cell(x=x, depth=depth, rho=rho, ip=ip))
    if declared is not None and declared != len(cells):
        raise ERTFormatError(
            path, model_rows[-1][0], f"the file declares {declared} blocks, found {len(cells)}"
        )
    if sens_rows is not None:
        # columns: X Depth Resistivity [I.P.] RelativeSensitivity SmoothedSensitivity Uncertainty
        if len(sens_rows) != len(cells):
            raise ERTFormatError(
                path,
                sens_rows[-1][0],
                f"expected {len(cells)} rows in the sensitivity section, found {len(sens_rows)}",
            )
        n_tail = 3  # relative sensitivity, smoothed sensitivity, uncertainty
        new_cells = []
        for cell, (ln, tok) in zip(cells, sens_rows, strict=True):
            if len(tok) < 3 + n_tail:
                raise ERTFormatError(path, ln, f"expected sensitivity columns, found {tok}")
            sens = to_float(path, ln, tok[-n_tail], "relative sensitivity")
            x = to_float(path, ln, tok[0], "block x")
            if abs(x - cell.x) > 1e-6:
                raise ERTFormatError(
                    path, ln, f"sensitivity row at x={x} does not match block x={cell.x}"
                )
            new_cells.append(Cell(cell.x, cell.depth, cell.rho, cell.ip, sens))
        cells = new_cells
    survey.cells = cells
    survey.spacing = min_step(c.x for c in cells)
    return survey
