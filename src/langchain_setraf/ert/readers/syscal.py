"""IRIS Syscal Pro exports from Prosys II / III (CSV or tab/semicolon text).

Column spellings (``../shared/docs/ert-reference.md`` §1.4; ResIPy ``syscalParser``,
pyGIMLi ``importAsciiColumns``), matched case-insensitively with blanks ignored:

* electrode x (m) of A, B, M, N: ``Spa.1..Spa.4`` (Prosys II), ``xA(m)..xN(m)`` (Prosys
  II new), ``xA (m)..xN (m)`` (Prosys III); optional ``yA (m)..`` and ``zA (m)..``
  (elevations). A remote electrode is written as ±999999 or ±9999999;
* ``Rho`` / ``Rho (Ohm.m)``: ρa, Ω·m (may be negative); ``Dev.`` / ``Dev. Rho (%)``:
  stacking deviation, %; ``M`` / ``M (mV/V)``: chargeability, mV/V; ``Vp`` /
  ``VMN (mV)`` and ``In`` / ``IAB (mA)``: voltage and current (ρa = K·Vp/In when no Rho
  column is exported).

Rows may start with an empty field; headers carry trailing blanks; with ``;`` or tab
separators a decimal comma (``12,5``) is read as a decimal point. A row whose ``Rho`` has
the sign opposite to K·Vp/In with the same magnitude (the instrument's own geometric-factor
sign, seen in pole-dipole exports) takes ρa = K·Vp/In, with a note. Rows with coincident
electrodes or a zero current are dropped with a note.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from langchain_setraf.ert.geometry import geometric_factor
from langchain_setraf.ert.i18n import Note
from langchain_setraf.ert.readers._lines import (
    NOT_FINITE,
    csv_rows,
    min_step,
    sniff_delimiter,
    to_float,
)
from langchain_setraf.ert.readers._quadrupoles import (
    Dropped,
    Position,
    Reading,
    build_data,
    guess_array,
)
from langchain_setraf.ert.survey import ERTFormatError, Survey

__all__ = ["is_syscal_header", "read_syscal"]

_POSITIONS = [
    ("spa.1", "spa.2", "spa.3", "spa.4"),
    ("xa(m)", "xb(m)", "xm(m)", "xn(m)"),
]
_ELEVATIONS = ("za(m)", "zb(m)", "zm(m)", "zn(m)")
_NORTHINGS = ("ya(m)", "yb(m)", "ym(m)", "yn(m)")
_RHO = ("rho", "rho(ohm.m)", "rho(ohm-m)", "rho(ohmm)", "rho(ω.m)")
_DEV = ("dev.rho(%)", "dev.", "dev", "dev.(%)")
_IP = ("m", "m(mv/v)")
_VP = ("vp", "vmn(mv)", "vp(mv)")
_IN = ("in", "iab(ma)", "in(ma)")
_REMOTE = 999999.0
_DECIMAL_COMMA = re.compile(r"^[-+]?\d*,\d+$")


def _key(name: str) -> str:
    return re.sub(r"\s+", "", name).lower()


def is_syscal_header(line: str) -> bool:
    """Whether ``line`` is a Syscal export header (electrode position columns)."""
    keys = {_key(f) for f in re.split(r"[,;\t]", line)}
    return any(all(v in keys for v in variant) for variant in _POSITIONS)


def _find(names: list[str], choices: tuple[str, ...]) -> int | None:
    for choice in choices:
        if choice in names:
            return names.index(choice)
    return None


def _cell(row: list[str], col: int | None) -> float | None:
    """An optional numeric field (``None`` when absent, empty or not a finite number)."""
    if col is None or col >= len(row):
        return None
    try:
        value = float(row[col].replace(",", "."))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _flipped_rho(
    pos: list[float | None], rho: float, vp: float | None, current: float | None
) -> float | None:
    """K·Vp/In when the exported Rho has its opposite sign and the same magnitude.

    Some Prosys exports (pole-dipole with the remote electrode written as B) carry the
    instrument's negative geometric factor into Rho although Vp and In are positive.
    """
    if vp is None or not current or rho == 0:
        return None
    try:
        k = geometric_factor(pos[0], pos[1], pos[2], pos[3])
    except ValueError:
        return None  # degenerate: dropped later with its reason
    ours = k * vp / current
    if ours == 0 or (ours > 0) == (rho > 0):
        return None
    return ours if 0.8 <= abs(rho / ours) <= 1.25 else None


def read_syscal(path: Path, text: str) -> Survey:
    """Read a Syscal Pro CSV/text export."""
    decimal_comma = sniff_delimiter(text) != ","
    rows = csv_rows(path, text)
    first = next(rows, None)
    if first is None:
        raise ERTFormatError(path, 1, "expected a Syscal header, found an empty file")
    ln, header = first
    names = [_key(h) for h in header]
    pos_cols = next(
        ([names.index(v) for v in variant] for variant in _POSITIONS if set(variant) <= set(names)),
        None,
    )
    if pos_cols is None:
        raise ERTFormatError(path, ln, "expected Syscal columns Spa.1..Spa.4 or xA(m)..xN(m)")
    z_cols = [names.index(c) for c in _ELEVATIONS] if set(_ELEVATIONS) <= set(names) else None
    y_cols = [names.index(c) for c in _NORTHINGS] if set(_NORTHINGS) <= set(names) else None
    rho_col = _find(names, _RHO)
    vp_col, in_col = _find(names, _VP), _find(names, _IN)
    if rho_col is None and (vp_col is None or in_col is None):
        raise ERTFormatError(
            path, ln, "expected a 'Rho' (Ω·m) column, or 'Vp'/'VMN (mV)' and 'In'/'IAB (mA)'"
        )
    ip_col, dev_col = _find(names, _IP), _find(names, _DEV)
    survey = Survey(path=path, format="syscal-csv", title=path.stem)
    survey.value_kind = "apparent resistivity"
    survey.depth_kind = "pseudo"
    if ip_col is not None:
        survey.ip_quantity, survey.ip_unit = "Chargeability", "mV/V"

    def number(lineno: int, token: str, what: str, finite: bool = True) -> float:
        if decimal_comma and _DECIMAL_COMMA.match(token):
            token = token.replace(",", ".")
        return to_float(path, lineno, token, what, finite)

    def optional(lineno: int, col: int | None, row: list[str], what: str) -> float | None:
        if col is None or not row[col:] or not row[col]:
            return None
        value = number(lineno, row[col], what, finite=False)
        return value if math.isfinite(value) else None

    needed = [c for c in (*pos_cols, rho_col, vp_col, in_col) if c is not None]
    needed += (z_cols or []) + (y_cols or [])
    positions: list[Position] = []
    readings: list[Reading] = []
    heights: dict[float, tuple[float, int]] = {}
    northings: set[float] = set()
    dropped = Dropped()
    sign_flips: list[int] = []
    n_rows = 0
    for ln, row in rows:
        n_rows += 1
        if len(row) <= max(needed):
            raise ERTFormatError(
                path, ln, f"expected at least {max(needed) + 1} fields, found {len(row)}"
            )
        pos: list[float | None] = []
        for j, (c, label) in enumerate(zip(pos_cols, "ABMN", strict=True)):
            x = number(ln, row[c], f"x of electrode {label}")
            if abs(x) >= _REMOTE:
                pos.append(None)
                continue
            pos.append(x)
            if z_cols is not None:
                z = number(ln, row[z_cols[j]], f"z of electrode {label}")
                seen = heights.setdefault(round(x, 6), (z, ln))
                if abs(seen[0] - z) > 1e-3:
                    raise ERTFormatError(
                        path, ln, f"electrode at x={x:g} m has z={z:g} m here but "
                        f"{seen[0]:g} m on line {seen[1]}; expected one elevation per electrode "
                        "(boreholes are not supported)",
                    )  # fmt: skip
            if y_cols is not None:
                northings.add(number(ln, row[y_cols[j]], f"y of electrode {label}"))
        if len(northings) > 1:
            raise ERTFormatError(
                path, ln, "expected a 2-D line (one y for all electrodes); 3-D is not supported"
            )
        if rho_col is not None:
            value = number(ln, row[rho_col], "Rho", finite=False)
            if not math.isfinite(value):
                dropped.add(ln, NOT_FINITE)
                continue
            flipped = _flipped_rho(pos, value, _cell(row, vp_col), _cell(row, in_col))
            if flipped is not None:
                value = flipped
                sign_flips.append(ln)
        else:
            assert vp_col is not None and in_col is not None
            current = number(ln, row[in_col], "In (mA)", finite=False)
            voltage = number(ln, row[vp_col], "Vp (mV)", finite=False)
            if not (math.isfinite(current) and math.isfinite(voltage)):
                dropped.add(ln, NOT_FINITE)
                continue
            if current == 0:
                dropped.add(ln, Note("reader.zero_current_in"))
                continue
            value = voltage / current
        ip = optional(ln, ip_col, row, "M")
        dev = optional(ln, dev_col, row, "Dev.")
        positions.append((pos[0], pos[1], pos[2], pos[3]))
        readings.append(Reading(ln, value, ip, None if dev is None else abs(dev) / 100.0))
    if n_rows == 0:
        raise ERTFormatError(path, ln, "expected at least one data row after the header")
    if not positions:
        dropped.check(survey, 0)  # raises: no usable row
    survey.spacing = min_step(p for pos in positions for p in pos if p is not None)
    elevation = {x: z for x, (z, _) in heights.items()}
    build_data(
        survey,
        positions,
        readings,
        rho_col is None,
        (lambda x: elevation[x]) if heights else None,
        dropped,
    )
    if rho_col is None:
        survey.notes.append(Note("reader.no_rho"))
    if sign_flips:
        survey.notes.append(Note("reader.sign_flips", n=len(sign_flips), line=sign_flips[0]))
    survey.array = guess_array(survey)
    return survey
