"""pyGIMLi / BERT unified data format (``.dat``, ``.ohm``, ``.shm``, ``.udf``).

Grammar (``../shared/docs/ert-reference.md`` §1.3; BERT data-format page
resistivity.net "Data Format"; gimli ``DataContainer::load``):

* ``#`` starts a comment anywhere on a line (``64# Number of electrodes`` is valid);
  blank lines are skipped; tokens are case-insensitive.
* a line with the number of sensors; an optional ``#`` token line (``x y z``, ``x z``;
  units ``/m`` ``/mm``); one row per sensor (2-D: ``x z`` with z the elevation, or
  ``x y`` with y the height);
* a line with the number of data; an optional token line (default ``a b m n rhoa err``);
  one row per datum. ``a b m n`` (``c1 c2 p1 p2``) are 1-based sensor numbers, 0 = a
  remote electrode. Value tokens: ``rhoa`` (``rho_a ra rs rhos``) Ω·m; ``r`` (``rho
  r(ohm) imp z u/i``) Ω; ``u`` (``v``) with ``/V /mV /uV``; ``i`` with ``/A /mA /uA``;
  ``err`` (``error std``) as a fraction, ``/%`` or ``/Ohm`` (absolute); ``ip``
  (``phase phi``), mrad unless a unit says otherwise; ``iperr``; ``k``; ``t``;
  ``valid``; ``sp``;
* optionally a topography block: a count, an optional token line, ``x [y] z`` rows.

As in pyGIMLi, a token the reader does not know names a column that is ignored (a note
lists those with values), so ``# x z position for each electrode`` is a valid sensor
token line; a data token line with an unknown token but no electrode or value column is
refused. Electrodes given as ``x y z`` map coordinates along one straight line are placed
at their distance along it (:mod:`._straight_line`); other layouts with several ``y``, or
several heights at one ``x`` (boreholes, rings), are refused: this package reads 2-D
surface lines. Data rows with degenerate geometry or a zero current are dropped with a
note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from langchain_setraf.ert.geometry import edwards_median_depth, geometric_factor
from langchain_setraf.ert.i18n import Note
from langchain_setraf.ert.readers._lines import NOT_FINITE, fields, to_floats, to_int
from langchain_setraf.ert.readers._quadrupoles import (
    Dropped,
    guess_array,
    reason_of,
    set_pseudo_cells,
)
from langchain_setraf.ert.readers._straight_line import StraightLine
from langchain_setraf.ert.survey import ERTFormatError, Quadrupole, Survey

__all__ = ["read_unified"]

_ALIASES = {
    "a": "a", "c1": "a", "b": "b", "c2": "b", "m": "m", "p1": "m", "n": "n", "p2": "n",
    "rhoa": "rhoa", "rho_a": "rhoa", "ra": "rhoa", "rs": "rhoa", "rhos": "rhoa",
    "r": "r", "rho": "r", "r(ohm)": "r", "imp": "r", "z": "r", "u/i": "r",
    "u": "u", "v": "u", "i": "i", "err": "err", "error": "err", "std": "err",
    "ip": "ip", "phase": "ip", "phi": "ip", "iperr": "iperr", "k": "k", "t": "t",
    "valid": "valid", "sp": "sp",
}  # fmt: skip
#: Allowed units (lower case) per canonical token and the factor to SI; "" = no unit.
_UNITS: dict[str, dict[str, float]] = {
    "a": {"": 1.0}, "b": {"": 1.0}, "m": {"": 1.0}, "n": {"": 1.0},
    "rhoa": {"": 1.0, "ohmm": 1.0, "ohm.m": 1.0, "ohm*m": 1.0, "ohm-m": 1.0},
    "r": {"": 1.0, "ohm": 1.0},
    "u": {"": 1.0, "v": 1.0, "mv": 1e-3, "uv": 1e-6},
    "sp": {"": 1.0, "v": 1.0, "mv": 1e-3, "uv": 1e-6},
    "i": {"": 1.0, "a": 1.0, "ma": 1e-3, "ua": 1e-6},
    "err": {"": 1.0, "%": 1e-2, "ohm": 1.0},
    "ip": {"": 1.0, "mrad": 1.0, "%": 1.0, "fe": 1.0, "mf": 1.0, "mv/v": 1.0, "ms": 1.0},
    "iperr": {"": 1.0, "%": 1e-2, "mrad": 1.0},
    "k": {"": 1.0, "m": 1.0}, "t": {"": 1.0}, "valid": {"": 1.0},
}  # fmt: skip
_IP_QUANTITY = {"": "Phase Angle", "mrad": "Phase Angle", "%": "IP", "fe": "Frequency Effect",
                "mf": "Metal Factor", "mv/v": "Chargeability", "ms": "Chargeability"}  # fmt: skip
_SENSOR_UNITS = {"": 1.0, "m": 1.0, "mm": 1e-3}
#: Value columns a datum cannot do without; a nan/inf elsewhere (err, ip…) is read as absent.
_NEEDED = ("rhoa", "r", "u", "i", "k")


@dataclass(frozen=True)
class _Column:
    name: str  # canonical token
    unit: str  # lower case, "" when none
    scale: float


def _columns(path: Path, lineno: int | None, raw: str) -> list[_Column]:
    out = []
    for tok in raw.split():
        name, _, unit = tok.lower().partition("/")
        if name == "u" and unit == "i":  # the alias u/i (a resistance), not u in unit i
            name, unit = "u/i", ""
        canon = _ALIASES.get(name)
        if canon is None:  # kept as an ignored column (pyGIMLi keeps any token)
            out.append(_Column("", tok, 1.0))
            continue
        units = _UNITS[canon]
        if unit not in units:
            allowed = ", ".join(repr(u) for u in units if u)
            raise ERTFormatError(
                path, lineno, f"unit {unit!r} of token {tok!r} is not one of {allowed}"
            )
        out.append(_Column(canon, unit, units[unit]))
    known = [c.name for c in out if c.name]
    if len(set(known)) != len(known):
        raise ERTFormatError(path, lineno, f"expected each data column once, found {raw!r}")
    return out


def _check_required(path: Path, lineno: int | None, columns: list[_Column]) -> None:
    """Electrodes a b m n and a value column must be named; unknown tokens are refused then."""
    names = [c.name for c in columns if c.name]
    unknown = [c.unit for c in columns if not c.name]
    missing = [key for key in ("a", "b", "m", "n") if key not in names]
    has_value = "rhoa" in names or "r" in names or ("u" in names and "i" in names)
    if (missing or not has_value) and unknown:
        raise ERTFormatError(path, lineno, f"unknown data column token {unknown[0]!r}")
    if missing:
        raise ERTFormatError(
            path, lineno, f"expected an electrode column {missing[0]!r} in {names}"
        )
    if not has_value:
        raise ERTFormatError(path, lineno, f"expected a rhoa, r, or u and i column in {names}")


def _sensor_columns(path: Path, lineno: int, raw: str) -> list[tuple[str, str, float]]:
    """``(token, coordinate, scale)`` per column; coordinate ``""`` = not x, y or z.

    Like pyGIMLi (``DataContainer::load``), a token other than x, y, z names a column
    that is ignored, so a descriptive line such as ``# x z position for each electrode``
    is a valid token line. A coordinate with an unknown unit is an error.
    """
    out = []
    for tok in raw.split():
        name, _, unit = tok.lower().partition("/")
        if name not in ("x", "y", "z"):
            out.append((tok, "", 1.0))
            continue
        if unit not in _SENSOR_UNITS:
            raise ERTFormatError(
                path, lineno, f"expected sensor column tokens x, y, z (units m, mm), found {tok!r}"
            )
        out.append((tok, name, _SENSOR_UNITS[unit]))
    known = [name for _, name, _ in out if name]
    if "x" not in known or len(set(known)) != len(known):
        raise ERTFormatError(
            path,
            lineno,
            f"expected sensor column tokens x, y, z (x required), found {raw!r}",
        )
    return out


class _Items:
    """Lines as (number, content before '#', comment after '#'), without blank ones."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.items: list[tuple[int, str, str]] = []
        for i, raw in enumerate(text.splitlines(), start=1):
            content, _, comment = raw.partition("#")
            if content.strip() or comment.strip():
                self.items.append((i, content.strip(), comment.strip()))
        self.pos = 0

    def skip_comments(self) -> None:
        while self.pos < len(self.items) and not self.items[self.pos][1]:
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_comments()
        return self.pos >= len(self.items)

    def content(self, what: str) -> tuple[int, str]:
        self.skip_comments()
        if self.pos >= len(self.items):
            last = self.items[-1][0] if self.items else None
            raise ERTFormatError(self.path, last, f"expected {what}, found end of file")
        lineno, content, _ = self.items[self.pos]
        self.pos += 1
        return lineno, content

    def token_line(self) -> tuple[int, str] | None:
        """The comment-only line right after a count, if there is one."""
        if self.pos < len(self.items) and not self.items[self.pos][1] and self.items[self.pos][2]:
            lineno, _, comment = self.items[self.pos]
            self.pos += 1
            return lineno, comment
        return None

    def count(self, what: str) -> tuple[int, int]:
        ln, content = self.content(what)
        tok = fields(content)
        if len(tok) != 1:
            raise ERTFormatError(self.path, ln, f"expected {what} (one integer), found {content!r}")
        value = to_int(self.path, ln, tok[0], what)
        if value < 0:
            raise ERTFormatError(self.path, ln, f"expected a non-negative {what}, found {value}")
        return ln, value


@dataclass
class _Sensors:
    electrodes: list[tuple[float, float]]
    """``(x, height)`` of each electrode, m."""
    ignored: list[str]
    """Sensor columns that are not x, y or z."""
    line: StraightLine | None = None
    """The map line the electrodes were projected on (x and y both vary)."""


def _sensors(items: _Items) -> _Sensors:
    path = items.path
    ln, n_sensors = items.count("the number of electrodes")
    if n_sensors == 0:
        raise ERTFormatError(path, ln, "expected at least 1 electrode")
    tl = items.token_line()
    tokens = _sensor_columns(path, tl[0], tl[1]) if tl else None
    electrodes: list[tuple[float, float]] = []
    lines: list[int] = []
    plan: list[tuple[float, float]] = []  # (x, y) of electrodes given with x, y and z
    ignored: dict[str, None] = {}
    for j in range(n_sensors):
        ln, content = items.content(f"electrode {j + 1} of {n_sensors}")
        cols = tokens or (
            [("x", "x", 1.0), ("z", "z", 1.0)]
            if len(fields(content)) == 2
            else [("x", "x", 1.0), ("y", "y", 1.0), ("z", "z", 1.0)]
        )
        n_known = max(i for i, (_, name, _) in enumerate(cols) if name) + 1
        what = f"electrode {j + 1} ({' '.join(name for _, name, _ in cols if name)})"
        nums = to_floats(path, ln, content, what, range(n_known, len(cols) + 1))
        used = cols[: len(nums)]
        vals = {name: v * scale for (_, name, scale), v in zip(used, nums, strict=True) if name}
        ignored.update((tok, None) for tok, name, _ in used if not name)
        names = [name for _, name, _ in used if name]
        if "z" in vals:
            height = vals["z"]
            plan.append((vals.get("x", 0.0), vals.get("y", 0.0)))
        else:  # 2-D cross-sections written as "x y": y is the height
            height = vals.get("y", 0.0) if names == ["x", "y"] else 0.0
        electrodes.append((vals.get("x", 0.0), height))
        lines.append(ln)
    line = None
    if len({y for _, y in plan}) > 1:
        line = StraightLine.fit(plan) if len(plan) == len(electrodes) else None
        if line is None:
            raise ERTFormatError(
                path,
                ln,
                "expected a 2-D line (one y for all electrodes, or electrodes on one straight "
                "line in x-y); a 3-D layout is not supported",
            )
        electrodes = [
            (round(line.distance(x, y), 6), h)
            for (x, y), (_, h) in zip(plan, electrodes, strict=True)
        ]
    _check_surface_line(path, electrodes, lines)
    return _Sensors(electrodes, list(ignored), line)


def _check_surface_line(
    path: Path, electrodes: list[tuple[float, float]], lines: list[int]
) -> None:
    """Refuse two electrodes at one x with different heights (boreholes, rings)."""
    seen: dict[float, tuple[float, int]] = {}
    for (x, height), ln in zip(electrodes, lines, strict=True):
        first = seen.setdefault(round(x, 6), (height, ln))
        if abs(first[0] - height) > 1e-3:
            raise ERTFormatError(
                path,
                ln,
                f"electrode at x={x:g} m has height {height:g} m here but {first[0]:g} m on "
                f"line {first[1]}; expected a surface line with one electrode height per x "
                "(borehole and ring layouts are not supported)",
            )


def read_unified(path: Path, text: str) -> Survey:
    """Read a pyGIMLi/BERT unified data file."""
    items = _Items(path, text)
    sensors = _sensors(items)
    electrodes = sensors.electrodes
    n_sensors = len(electrodes)
    _, n_data = items.count("the number of data")
    tl = items.token_line()
    token_ln = tl[0] if tl else None
    columns = _columns(path, token_ln, tl[1] if tl else "a b m n rhoa err")
    _check_required(path, token_ln, columns)
    names = [c.name for c in columns if c.name]
    has_r = "r" in names or ("u" in names and "i" in names)
    err_col = next((c for c in columns if c.name == "err"), None)
    if err_col and err_col.unit == "ohm" and not has_r:
        raise ERTFormatError(
            path, token_ln, "an absolute error err/Ohm needs an r (or u and i) column"
        )
    survey = Survey(path=path, format="unified", title=path.stem)
    survey.value_kind = "apparent resistivity"
    survey.depth_kind = "pseudo"
    xs = [e[0] for e in electrodes]
    diffs = sorted(round(abs(b - a), 6) for a, b in zip(xs, xs[1:], strict=False) if b != a)
    survey.spacing = diffs[len(diffs) // 2] if diffs else None  # median electrode step
    survey.electrodes = electrodes
    ip_col = next((c for c in columns if c.name == "ip"), None)
    if ip_col:
        survey.ip_quantity = _IP_QUANTITY.get(ip_col.unit, "IP")
        survey.ip_unit = ip_col.unit or "mrad"
    data = []
    computed_k = False
    skipped = 0
    dropped = Dropped()
    for j in range(n_data):
        ln, content = items.content(f"data row {j + 1} of {n_data}")
        tokens = " ".join(c.name or c.unit for c in columns)
        nums = to_floats(
            path, ln, content, f"data row {j + 1} ({tokens})", len(columns), finite=False
        )
        row = {c.name: v * c.scale for c, v in zip(columns, nums, strict=True) if c.name}
        if not all(math.isfinite(row[key]) for key in _NEEDED if key in row):
            dropped.add(ln, NOT_FINITE)
            continue
        row = {key: v for key, v in row.items() if math.isfinite(v) or key in ("a", "b", "m", "n")}
        idx: list[int | None] = []
        for key in ("a", "b", "m", "n"):
            e = int(row[key])
            if e != row[key] or e < 0 or e > n_sensors:
                raise ERTFormatError(
                    path, ln, f"expected electrode {key} in 0..{n_sensors}, found {row[key]:g}"
                )
            idx.append(None if e == 0 else e - 1)
        if row.get("valid", 1.0) == 0:
            skipped += 1
            continue
        epos = tuple(None if e is None else electrodes[e][0] for e in idx)
        try:
            k = row["k"] if "k" in row else geometric_factor(*epos)
            z_e = edwards_median_depth(*epos)
        except ValueError as exc:
            dropped.add(ln, reason_of(exc))
            continue
        if k == 0 and "rhoa" not in row:
            dropped.add(ln, Note("reader.zero_k"))
            continue
        resistance = row.get("r")
        if resistance is None and "u" in row and "i" in row:
            if row["i"] == 0:
                dropped.add(ln, Note("reader.zero_current_i"))
                continue
            resistance = row["u"] / row["i"]
        if "rhoa" in row:
            rhoa = row["rhoa"]
        else:
            assert resistance is not None  # checked on the token line
            rhoa = k * resistance
            computed_k = computed_k or "k" not in row
        err = row.get("err")
        if err is not None and err_col is not None and err_col.unit == "ohm":
            err = abs(err / resistance) if resistance else None
        real = [p for p in epos if p is not None]
        data.append(
            Quadrupole(
                a=idx[0], b=idx[1], m=idx[2], n=idx[3], rhoa=rhoa, k=k, resistance=resistance,
                ip=row.get("ip"), err=err, x_mid=sum(real) / len(real), pseudo_depth=z_e,
            )
        )  # fmt: skip
    if not items.at_end():
        _, n_topo = items.count("the number of topography points")
        items.token_line()
        for j in range(n_topo):
            ln, content = items.content(f"topography point {j + 1} of {n_topo}")
            nums = to_floats(path, ln, content, "a topography point (x [y] z)", (2, 3))
            x = nums[0]
            if sensors.line is not None and len(nums) == 3:
                x = round(sensors.line.distance(nums[0], nums[1]), 6)
            survey.topography.append((x, nums[-1]))
        if not items.at_end():
            ln, content = items.content("end of file")
            raise ERTFormatError(path, ln, f"expected end of file, found {content!r}")
    if sensors.line is not None:
        offset = round(sensors.line.max_offset, 3)
        survey.notes.append(
            Note("reader.map_line", length=f"{sensors.line.length:.4g}", offset=f"{offset:g}")
        )
    if skipped:
        survey.notes.append(Note("reader.invalid", n=skipped))
    ignored = [c.unit for c in columns if not c.name] + sensors.ignored
    if ignored:
        survey.notes.append(Note("reader.ignored", columns=", ".join(repr(t) for t in ignored)))
    if computed_k:
        survey.notes.append(Note("reader.resistances_only"))
    if not data and not dropped.rows:
        raise ERTFormatError(path, None, "expected at least one valid data row")
    dropped.check(survey, len(data))
    survey.data = data
    set_pseudo_cells(survey)
    survey.array = guess_array(survey)
    return survey
