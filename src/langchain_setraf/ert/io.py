"""Readers for the ERT files users actually have, into one :class:`Survey`.

Formats (see ``../shared/docs/ert-reference.md`` §1): SETRAF ``.dat``, SETRAF CSV
(``Projet,Essai,ρ_a1..``) and ``freq.dat``; Res2DInv index-based arrays 1–7 (IP block,
topography block, mid-point or first-electrode x-location) and the general array 11;
pyGIMLi/BERT unified ``.dat/.ohm`` (resistances only → ρa through the geometric factor);
Res2DInv inverted-model XYZ (with its sensitivity section); Syscal Pro CSV exports; plain
``x, z, ρ`` tables.

Every reader either returns a complete :class:`Survey` or raises :class:`ERTFormatError`
naming the file, the line and what was expected: never a partial result.

Example:
    >>> from langchain_setraf.ert import load_survey
    >>> s = load_survey("examples/two_layer_wenner.dat")
    >>> s.format, s.array, s.n_electrodes
    ('res2dinv', 'wenner-alpha', 32)
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from langchain_setraf.ert.geometry import edwards_median_depth, geometric_factor
from langchain_setraf.ert.survey import Cell, ERTFormatError, Quadrupole, Survey

__all__ = ["FORMATS", "load_survey", "sniff_format"]

MAX_FILE_BYTES = 200 * 1024 * 1024


class _Lines:
    """Logical (non-blank) lines with their 1-based physical line numbers."""

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
        return self.items[self.pos] if self.pos < len(self.items) else None

    def next(self, what: str) -> tuple[int, str]:
        if self.pos >= len(self.items):
            raise ERTFormatError(self.path, self.last_line, f"expected {what}, found end of file")
        item = self.items[self.pos]
        self.pos += 1
        return item

    def numbers(self, what: str, count: int | tuple[int, ...]) -> tuple[int, list[float]]:
        lineno, line = self.next(what)
        return lineno, _floats(self.path, lineno, line, what, count)

    def integer(self, what: str) -> tuple[int, int]:
        lineno, line = self.next(what)
        return lineno, _int(self.path, lineno, line.split()[0] if line.split() else line, what)


_SPLIT = re.compile(r"[\s,;]+")


def _fields(line: str) -> list[str]:
    return [f for f in _SPLIT.split(line.strip()) if f]


def _float(path: Path, lineno: int, token: str, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ERTFormatError(
            path, lineno, f"expected a number for {what}, found {token!r}"
        ) from None
    if not math.isfinite(value):
        raise ERTFormatError(path, lineno, f"expected a finite number for {what}, found {token!r}")
    return value


def _int(path: Path, lineno: int, token: str, what: str) -> int:
    value = _float(path, lineno, token, what)
    if value != int(value):
        raise ERTFormatError(path, lineno, f"expected an integer for {what}, found {token!r}")
    return int(value)


def _floats(
    path: Path, lineno: int, line: str, what: str, count: int | tuple[int, ...]
) -> list[float]:
    tokens = _fields(line)
    allowed = (count,) if isinstance(count, int) else count
    if len(tokens) not in allowed:
        want = " or ".join(str(c) for c in allowed)
        raise ERTFormatError(
            path, lineno, f"expected {want} numbers for {what}, found {len(tokens)}: {line!r}"
        )
    return [_float(path, lineno, t, what) for t in tokens]


def _min_step(xs: Iterable[float]) -> float | None:
    """Smallest distance between distinct positions (the unit spacing of a grid)."""
    grid = sorted(set(xs))
    steps = [round(b - a, 6) for a, b in zip(grid, grid[1:], strict=False)]
    return min(steps) if steps else None


def _positive(path: Path, lineno: int, value: float, what: str) -> float:
    if value <= 0:
        raise ERTFormatError(path, lineno, f"expected a positive {what}, found {value}")
    return value


def _read_text(path: Path) -> str:
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


# ---------------------------------------------------------------------------------------
# Res2DInv index-based (types 1-7) and general array (11)
# ---------------------------------------------------------------------------------------
_ARRAYS = {
    1: "wenner-alpha",
    2: "pole-pole",
    3: "dipole-dipole",
    4: "wenner-beta",
    5: "wenner-gamma",
    6: "pole-dipole",
    7: "wenner-schlumberger",
    11: "general",
    15: "gradient",
}
_N_COLUMNS = {1: 3, 2: 3, 4: 3, 5: 3, 3: 4, 6: 4, 7: 4}


def _index_electrodes(
    code: int, x: float, a: float, n: float, midpoint: bool
) -> tuple[float | None, float | None, float | None, float | None]:
    """Electrode positions (A, B, M, N) of one index-based Res2DInv datum (ref. §1.1)."""
    if code in (1, 4, 5):
        x0 = x - 1.5 * a if midpoint else x
        p = [x0, x0 + a, x0 + 2 * a, x0 + 3 * a]
        if code == 1:  # C1 P1 P2 C2
            return p[0], p[3], p[1], p[2]
        if code == 4:  # C2 C1 P1 P2
            return p[1], p[0], p[2], p[3]
        return p[0], p[2], p[1], p[3]  # 5: C1 P1 C2 P2
    if code == 2:
        x0 = x - 0.5 * a if midpoint else x
        return x0, None, x0 + a, None
    if code == 3:  # C2 C1 ... P1 P2
        x0 = x - a * (n / 2 + 1) if midpoint else x
        return x0 + a, x0, x0 + a + n * a, x0 + 2 * a + n * a
    if code == 7:  # C1 P1 P2 C2
        x0 = x - a * (n + 0.5) if midpoint else x
        return x0, x0 + (2 * n + 1) * a, x0 + n * a, x0 + (n + 1) * a
    if code == 6:
        # forward (n > 0): C1 P1 P2 with P1 = C1 + n a; reverse (n < 0): P2 P1 C1.
        # Mid-point taken between C1 and P1 [M: Res2DInv convention, not verified].
        na = abs(n) * a
        if n > 0:
            x0 = x - na / 2 if midpoint else x
            return x0, None, x0 + na, x0 + na + a
        x0 = x - a - na / 2 if midpoint else x
        return x0 + a + na, None, x0 + a, x0
    raise ValueError(f"array type {code}")  # pragma: no cover - filtered by caller


def _read_res2dinv(path: Path, text: str) -> Survey:
    lines = _Lines(path, text, comment=";")
    _, title = lines.next("a title line")
    ln, vals = lines.numbers("the unit electrode spacing (m)", 1)
    spacing = _positive(path, ln, vals[0], "electrode spacing")
    ln, code_line = lines.next("the array type code")
    code_tok = _fields(code_line)[0].rstrip("RLrl") if _fields(code_line) else ""
    code = _int(path, ln, code_tok, "the array type code")
    if code not in _ARRAYS:
        raise ERTFormatError(
            path,
            ln,
            f"array type {code} is not supported; expected 1-7 (index-based), 11 or 15 "
            "(general array)",
        )
    survey = Survey(path=path, format="res2dinv", title=title, array=_ARRAYS[code])
    survey.spacing = spacing
    survey.value_kind = "apparent resistivity"
    survey.depth_kind = "pseudo"
    resistance_values = False
    if code in (11, 15):
        _, sub = lines.integer("the general-array sub-type")
        if sub in _ARRAYS and sub not in (11, 15):
            survey.array = f"general ({_ARRAYS[sub]})"
        peek = lines.peek()
        if peek and re.match(r"^\s*type of measurement", peek[1], re.I):
            lines.next("the measurement-type text line")
        ln, mtype = lines.integer("the measurement type (0 = app. resistivity, 1 = resistance)")
        if mtype not in (0, 1):
            raise lines.error(f"expected measurement type 0 or 1, found {mtype}", ln)
        resistance_values = mtype == 1
    else:
        # optional remote-electrode block (pole-pole / pole-dipole exports)
        while (peek := lines.peek()) is not None and re.match(r"^[A-Za-z]", peek[1]):
            lines.next("remote-electrode block")
            nxt = lines.peek()
            if nxt is not None and len(_fields(nxt[1])) in (2, 3):
                lines.next("remote electrode coordinates")
    ln, n_data = lines.integer("the number of data points")
    if n_data <= 0:
        raise lines.error(f"expected a positive number of data points, found {n_data}", ln)
    if n_data > lines.remaining:
        raise lines.error(
            f"the file declares {n_data} data points but has only {lines.remaining} lines left",
            ln,
        )
    ln, xloc = lines.integer("the type of x-location (0 = first electrode, 1 = mid-point)")
    if xloc not in (0, 1, 2):
        raise lines.error(f"expected x-location type 0, 1 or 2, found {xloc}", ln)
    ln, ip_flag = lines.integer("the IP flag (0 or 1)")
    if ip_flag not in (0, 1):
        raise lines.error(f"expected IP flag 0 or 1, found {ip_flag}", ln)
    if ip_flag:
        survey.ip_quantity = lines.next("the IP quantity (e.g. Chargeability)")[1]
        survey.ip_unit = lines.next("the IP unit (e.g. mV/V)")[1]
        ln, timing = lines.next("the IP timing line")
        _floats(path, ln, timing, "the IP timing line", tuple(range(1, 64)))
    has_err = False
    if code in (11, 15):
        peek = lines.peek()
        if peek and re.match(r"^\s*error estimate", peek[1], re.I):
            lines.next("the error-estimate line")
            peek = lines.peek()
            if peek and re.match(r"^\s*type of error", peek[1], re.I):
                lines.next("the error-type line")
            lines.integer("the error-type flag")
            has_err = True

    positions: list[tuple[float | None, float | None, float | None, float | None]] = []
    values: list[tuple[float, float | None, float | None]] = []  # value, ip, err
    for i in range(n_data):
        what = f"data row {i + 1} of {n_data}"
        if code in (11, 15):
            ln, row = lines.next(what)
            tok = _fields(row)
            if not tok:
                raise lines.error(f"expected {what}", ln)
            k = _int(path, ln, tok[0], f"the electrode count of {what}")
            if k not in (2, 3, 4):
                raise lines.error(f"expected 2, 3 or 4 electrodes in {what}, found {k}", ln)
            need = 1 + 2 * k + 1 + ip_flag
            allowed = (need, need + 1, need + 2) if has_err else (need,)
            nums = _floats(path, ln, row, what, allowed)
            coords = nums[1 : 1 + 2 * k]
            xs = coords[0::2]
            if k == 4:  # C1 C2 P1 P2
                abmn: tuple[float | None, ...] = (xs[0], xs[1], xs[2], xs[3])
            elif k == 3:  # C1 P1 P2
                abmn = (xs[0], None, xs[1], xs[2])
            else:  # C1 P1
                abmn = (xs[0], None, xs[1], None)
            value = nums[1 + 2 * k]
            ip = nums[2 + 2 * k] if ip_flag else None
            err = nums[need] if len(nums) > need else None
            positions.append(abmn)  # type: ignore[arg-type]
            values.append((value, ip, err))
        else:
            ncol = _N_COLUMNS[code] + ip_flag
            ln, nums = lines.numbers(what, ncol)
            x, a = nums[0], nums[1]
            _positive(path, ln, a, f"electrode spacing a in {what}")
            n = nums[2] if _N_COLUMNS[code] == 4 else 1.0
            if _N_COLUMNS[code] == 4 and n == 0:
                raise lines.error(f"expected a non-zero n factor in {what}", ln)
            value = nums[_N_COLUMNS[code] - 1]
            ip = nums[-1] if ip_flag else None
            positions.append(_index_electrodes(code, x, a, n, midpoint=xloc == 1))
            values.append((value, ip, None))

    # topography block
    peek = lines.peek()
    if peek and re.match(r"^\s*topography", peek[1], re.I):
        lines.next("'Topography in separate list'")
    topo: list[tuple[float, float]] = []
    if lines.peek() is not None:
        ln, flag = lines.integer("the topography flag (0, 1 or 2)")
        if flag not in (0, 1, 2):
            raise lines.error(f"expected topography flag 0, 1 or 2, found {flag}", ln)
        if flag:
            ln, m = lines.integer("the number of topography points")
            if m <= 0 or m > lines.remaining:
                raise lines.error(
                    f"expected a number of topography points ≤ {lines.remaining}, found {m}", ln
                )
            for j in range(m):
                _, xz = lines.numbers(f"topography point {j + 1} of {m} (x elevation)", 2)
                topo.append((xz[0], xz[1]))
            if lines.peek() is not None:
                lines.integer("the topography index of the first electrode")
    while (peek := lines.peek()) is not None:  # trailing flags: numbers only
        _floats(path, peek[0], peek[1], "a trailing flag", tuple(range(1, 16)))
        lines.next("a trailing flag")

    survey.topography = topo
    _finish_quadrupoles(survey, positions, values, resistance_values, spacing)
    return survey


def _finish_quadrupoles(
    survey: Survey,
    positions: list[tuple[float | None, float | None, float | None, float | None]],
    values: list[tuple[float, float | None, float | None]],
    resistance_values: bool,
    spacing: float | None,
) -> None:
    """Build electrodes and quadrupoles from positions; compute K, ρa, pseudo-depth."""
    path = survey.path
    xs = sorted({round(p, 6) for pos in positions for p in pos if p is not None})
    if survey.topography and spacing:
        # snap a constant offset between electrode x and the topography grid (ref. §1.1)
        topo_x = [t[0] for t in survey.topography]
        offset = xs[0] - min(topo_x) if xs else 0.0
        if offset and abs(offset) <= spacing / 2 + 1e-9:
            shifted = [round(x - offset, 6) for x in xs]
            on_grid = sum(1 for x in shifted if any(abs(x - t) < 1e-6 for t in topo_x))
            if on_grid == len(shifted):
                survey.notes.append(
                    f"electrode x-locations were offset by {offset:g} m from the topography "
                    "grid; snapped to the grid"
                )
                positions = [
                    tuple(None if p is None else round(p - offset, 6) for p in pos)  # type: ignore[misc]
                    for pos in positions
                ]
                xs = shifted
    index = {x: i for i, x in enumerate(xs)}
    topo_z = dict(survey.topography)
    survey.electrodes = [(x, topo_z.get(x, 0.0)) for x in xs]
    data = []
    for row, (pos, (value, ip, err)) in enumerate(zip(positions, values, strict=True)):
        idx = [None if p is None else index[round(p, 6)] for p in pos]
        try:
            k = geometric_factor(*pos)
            z_e = edwards_median_depth(*pos)
        except ValueError as exc:
            raise ERTFormatError(path, None, f"data row {row + 1}: {exc}") from None
        if resistance_values:
            rhoa, resistance = k * value, value
        else:
            rhoa, resistance = value, None
        real = [p for p in pos if p is not None]
        data.append(
            Quadrupole(
                a=idx[0],
                b=idx[1],
                m=idx[2],
                n=idx[3],
                rhoa=rhoa,
                k=k,
                resistance=resistance,
                ip=ip,
                err=err,
                x_mid=sum(real) / len(real),
                pseudo_depth=z_e,
            )
        )
    survey.data = data
    _set_pseudo_cells(survey)


def _set_pseudo_cells(survey: Survey) -> None:
    """One pseudo-section point per datum with positive ρa (Edwards depth)."""
    survey.cells = [
        Cell(x=q.x_mid, depth=q.pseudo_depth, rho=q.rhoa, ip=q.ip)
        for q in survey.data
        if q.rhoa > 0
    ]
    if len(survey.cells) < len(survey.data):
        survey.notes.append(
            f"{len(survey.data) - len(survey.cells)} datum(s) with non-positive apparent "
            "resistivity kept in the data but left out of the section statistics"
        )


# ---------------------------------------------------------------------------------------
# pyGIMLi / BERT unified data format
# ---------------------------------------------------------------------------------------
_UNIFIED_ALIASES = {
    "a": "a", "c1": "a", "b": "b", "c2": "b", "m": "m", "p1": "m", "n": "n", "p2": "n",
    "rhoa": "rhoa", "rho_a": "rhoa", "ra": "rhoa", "rs": "rhoa", "rhos": "rhoa",
    "r": "r", "rho": "r", "r(ohm)": "r", "imp": "r", "z": "r", "u/i": "r",
    "u": "u", "v": "u", "i": "i", "err": "err", "error": "err", "std": "err",
    "ip": "ip", "phase": "ip", "phi": "ip", "iperr": "iperr", "k": "k", "t": "t",
    "valid": "valid", "sp": "sp",
}  # fmt: skip
_UNIT_SCALE = {"mv": 1e-3, "ma": 1e-3, "ms": 1e-3, "%": 1e-2}


def _unified_tokens(path: Path, lineno: int, raw: str, kind: str) -> list[tuple[str, float]]:
    out = []
    for tok in raw.split():
        name, _, unit = tok.lower().partition("/")
        if kind == "sensor":
            if name not in ("x", "y", "z") or unit not in ("", "m", "mm"):
                raise ERTFormatError(
                    path, lineno, f"expected sensor column tokens x, y, z, found {tok!r}"
                )
            out.append((name, 1e-3 if unit == "mm" else 1.0))
            continue
        canon = _UNIFIED_ALIASES.get(name)
        if canon is None:
            raise ERTFormatError(path, lineno, f"unknown data column token {tok!r}")
        out.append((canon, _UNIT_SCALE.get(unit, 1.0)))
    return out


def _read_unified(path: Path, text: str) -> Survey:
    # (line number, content before '#', comment after '#')
    items: list[tuple[int, str, str]] = []
    for i, raw in enumerate(text.splitlines(), start=1):
        content, _, comment = raw.partition("#")
        if content.strip() or comment.strip():
            items.append((i, content.strip(), comment.strip()))
    pos = 0

    def next_content(what: str) -> tuple[int, str]:
        nonlocal pos
        while pos < len(items) and not items[pos][1]:
            pos += 1
        if pos >= len(items):
            last = items[-1][0] if items else None
            raise ERTFormatError(path, last, f"expected {what}, found end of file")
        lineno, content, _ = items[pos]
        pos += 1
        return lineno, content

    def token_line() -> tuple[int, str] | None:
        nonlocal pos
        if pos < len(items) and not items[pos][1] and items[pos][2]:
            lineno, _, comment = items[pos]
            pos += 1
            return lineno, comment
        return None

    def count(what: str) -> int:
        ln, content = next_content(what)
        tok = content.split()
        if len(tok) != 1:
            raise ERTFormatError(path, ln, f"expected {what} (one integer), found {content!r}")
        value = _int(path, ln, tok[0], what)
        if value < 0:
            raise ERTFormatError(path, ln, f"expected a non-negative {what}, found {value}")
        return value

    n_sensors = count("the number of electrodes")
    if n_sensors == 0:
        raise ERTFormatError(path, items[0][0] if items else None, "expected at least 1 electrode")
    tl = token_line()
    sensor_tokens = _unified_tokens(path, tl[0], tl[1], "sensor") if tl else None
    electrodes: list[tuple[float, float]] = []
    for j in range(n_sensors):
        ln, content = next_content(f"electrode {j + 1} of {n_sensors}")
        tokens = sensor_tokens or (
            [("x", 1.0), ("z", 1.0)]
            if len(content.split()) == 2
            else [("x", 1.0), ("y", 1.0), ("z", 1.0)]
        )
        nums = _floats(
            path, ln, content, f"electrode {j + 1} ({' '.join(t for t, _ in tokens)})", len(tokens)
        )
        vals = {t: v * s for (t, s), v in zip(tokens, nums, strict=True)}
        # 2-D lines: x along the line, z elevation ("# x y" cross-sections use y as height)
        height = vals.get("z", vals.get("y", 0.0) if "z" not in vals and len(tokens) == 2 else 0.0)
        electrodes.append((vals.get("x", 0.0), height))
    n_data = count("the number of data")
    tl = token_line()
    default = "a b m n rhoa err"
    data_tokens = _unified_tokens(path, tl[0] if tl else 0, tl[1] if tl else default, "data")
    names = [t for t, _ in data_tokens]
    for required in ("a", "b", "m", "n"):
        if required not in names:
            raise ERTFormatError(
                path, tl[0] if tl else None, f"expected an electrode column {required!r} in {names}"
            )
    has_value = "rhoa" in names or "r" in names or ("u" in names and "i" in names)
    if not has_value:
        raise ERTFormatError(
            path, tl[0] if tl else None, f"expected a rhoa, r, or u and i column in {names}"
        )
    survey = Survey(path=path, format="unified", title=path.stem)
    survey.value_kind = "apparent resistivity"
    survey.depth_kind = "pseudo"
    xs = [e[0] for e in electrodes]
    diffs = sorted(round(abs(b - a), 6) for a, b in zip(xs, xs[1:], strict=False) if b != a)
    survey.spacing = diffs[len(diffs) // 2] if diffs else None  # median electrode step
    survey.electrodes = electrodes
    data = []
    computed_k = False
    for j in range(n_data):
        ln, content = next_content(f"data row {j + 1} of {n_data}")
        nums = _floats(path, ln, content, f"data row {j + 1} ({' '.join(names)})", len(names))
        row = {t: v * s for (t, s), v in zip(data_tokens, nums, strict=True)}
        idx: list[int | None] = []
        for key in ("a", "b", "m", "n"):
            e = int(row[key])
            if e != row[key] or e < 0 or e > n_sensors:
                raise ERTFormatError(
                    path, ln, f"expected electrode {key} in 0..{n_sensors}, found {row[key]:g}"
                )
            idx.append(None if e == 0 else e - 1)
        if row.get("valid", 1.0) == 0:
            continue
        epos = tuple(None if e is None else electrodes[e][0] for e in idx)
        try:
            k = row["k"] if "k" in row else geometric_factor(*epos)
            z_e = edwards_median_depth(*epos)
        except ValueError as exc:
            raise ERTFormatError(path, ln, f"data row {j + 1}: {exc}") from None
        resistance = row.get("r")
        if resistance is None and "u" in row and "i" in row:
            if row["i"] == 0:
                raise ERTFormatError(path, ln, f"data row {j + 1}: current i is zero")
            resistance = row["u"] / row["i"]
        if "rhoa" in row:
            rhoa = row["rhoa"]
        else:
            assert resistance is not None
            rhoa = k * resistance
            computed_k = computed_k or "k" not in row
        real = [p for p in epos if p is not None]
        data.append(
            Quadrupole(
                a=idx[0], b=idx[1], m=idx[2], n=idx[3], rhoa=rhoa, k=k, resistance=resistance,
                ip=row.get("ip"), err=row.get("err"), x_mid=sum(real) / len(real),
                pseudo_depth=z_e,
            )
        )  # fmt: skip
    # optional topography block
    while pos < len(items) and not items[pos][1]:
        pos += 1
    if pos < len(items):
        n_topo = count("the number of topography points")
        token_line()
        for j in range(n_topo):
            ln, content = next_content(f"topography point {j + 1} of {n_topo}")
            nums = _floats(path, ln, content, "a topography point", (2, 3))
            survey.topography.append((nums[0], nums[-1]))
        while pos < len(items):
            if items[pos][1]:
                raise ERTFormatError(
                    path, items[pos][0], f"expected end of file, found {items[pos][1]!r}"
                )
            pos += 1
    if computed_k:
        survey.notes.append(
            "the file holds resistances only: ρa = K·R with the flat-earth geometric factor "
            "(topography effects not corrected)"
        )
    survey.data = data
    _set_pseudo_cells(survey)
    if not data:
        raise ERTFormatError(path, None, "expected at least one valid data row")
    survey.array = _guess_array(survey)
    return survey


def _guess_array(survey: Survey) -> str:
    """Name the array of unified/Syscal data from electrode order (or ``mixed``)."""
    kinds = set()
    for q in survey.data:
        if None in (q.a, q.b, q.m, q.n):
            kinds.add("pole")
            continue
        a, b, m, n = (survey.electrodes[i][0] for i in (q.a, q.b, q.m, q.n))  # type: ignore[index]
        lo, hi = sorted((a, b))
        if lo < min(m, n) and max(m, n) < hi:
            ratio = (min(m, n) - lo) / abs(m - n) if m != n else 0
            tol = 0.1 * abs(m - n)
            outer_ok = abs(hi - max(m, n) - abs(m - n)) <= tol
            is_wenner = abs(ratio - 1) <= 0.1 and outer_ok
            kinds.add("wenner-alpha" if is_wenner else "wenner-schlumberger")
        else:
            kinds.add("dipole-dipole")
    if kinds <= {"wenner-alpha", "wenner-schlumberger"} and len(kinds) == 2:
        return "wenner-schlumberger"
    return kinds.pop() if len(kinds) == 1 else "mixed"


# ---------------------------------------------------------------------------------------
# Res2DInv inverted-model XYZ
# ---------------------------------------------------------------------------------------
def _read_xyz(path: Path, text: str) -> Survey:
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
                declared = _int(path, ln, m.group(1), "the number of blocks")
            if m := re.match(r"percent rms error for this model is\s*(\S+)", h, re.I):
                survey.rms_percent = _float(path, ln, m.group(1), "the RMS error")
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
        x = _float(path, ln, tok[0], "block x")
        depth = abs(_float(path, ln, tok[1], "block depth"))
        rho = _positive(path, ln, _float(path, ln, tok[2], "block resistivity"), "resistivity")
        ip = _float(path, ln, tok[4], "block IP") if len(tok) >= 5 else None
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
            sens = _float(path, ln, tok[-n_tail], "relative sensitivity")
            x = _float(path, ln, tok[0], "block x")
            if abs(x - cell.x) > 1e-6:
                raise ERTFormatError(
                    path, ln, f"sensitivity row at x={x} does not match block x={cell.x}"
                )
            new_cells.append(Cell(cell.x, cell.depth, cell.rho, cell.ip, sens))
        cells = new_cells
    survey.cells = cells
    survey.spacing = _min_step(c.x for c in cells)
    return survey


# ---------------------------------------------------------------------------------------
# CSV-like formats: SETRAF, Syscal, plain x z rho
# ---------------------------------------------------------------------------------------
def _csv_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    sample = "\n".join(text.splitlines()[:5])
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        return [(reader.line_num, [c.strip() for c in row]) for row in reader if any(row)]
    except csv.Error as exc:
        raise ERTFormatError(path, None, f"expected CSV: {exc}") from None


def _read_setraf_csv(path: Path, text: str) -> Survey:
    rows = _csv_rows(path, text)
    ln, header = rows[0]
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
    if len(rows) < 2:
        raise ERTFormatError(path, ln, "expected at least one data row after the header")
    for t, (ln, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ERTFormatError(
                path,
                ln,
                f"expected {len(header)} fields (Projet, Essai, {n_read} readings), "
                f"found {len(row)}",
            )
        projects.append(row[0])
        for j, token in enumerate(row[2:], start=1):
            rho = _positive(path, ln, _float(path, ln, token, f"ρ_a{j}"), f"ρ_a{j}")
            survey.cells.append(Cell(x=float(t), depth=0.5 * j, rho=rho))
    survey.title = ", ".join(dict.fromkeys(projects))
    survey.electrodes = [(float(i), 0.0) for i in range(n_read)]
    survey.notes.append(
        f"{len(rows) - 1} test(s) × {n_read} readings; depth = 0.5 × reading index "
        "(the SETRAF app's convention, not a computed depth of investigation); "
        "x = test number"
    )
    return survey


def _read_setraf_dat(path: Path, text: str) -> Survey:
    lines = _Lines(path, text)
    ln, header = lines.next("the header 'survey-point depth data project'")
    if [h.lower() for h in header.split()] != ["survey-point", "depth", "data", "project"]:
        raise ERTFormatError(path, ln, "expected the header 'survey-point depth data project'")
    survey = Survey(path=path, format="setraf-dat", value_kind="resistivity", depth_kind="setraf")
    projects = []
    while lines.peek() is not None:
        ln, row = lines.next("a data row")
        tok = row.split()
        if len(tok) != 4:
            raise ERTFormatError(
                path, ln, f"expected 4 columns (survey-point depth data project), found {len(tok)}"
            )
        x = _float(path, ln, tok[0], "survey-point")
        depth = _float(path, ln, tok[1], "depth")
        rho = _positive(path, ln, _float(path, ln, tok[2], "data (Ω·m)"), "resistivity")
        survey.cells.append(Cell(x=x, depth=abs(depth), rho=rho))
        projects.append(tok[3])
    if not survey.cells:
        raise ERTFormatError(path, ln, "expected at least one data row")
    survey.title = "project " + ", ".join(dict.fromkeys(projects))
    return survey


def _read_setraf_freq(path: Path, text: str) -> Survey:
    """SETRAF ``freq.dat``: project, survey point, then one column per frequency (MHz).

    Depth = 1000 / f m (the app's convention); values are resistivities in Ω·m.
    """
    rows = _csv_rows(path, text)
    ln, header = rows[0]
    if len(header) < 3:
        raise ERTFormatError(path, ln, "expected columns project, survey point, frequencies…")
    freqs = []
    for h in header[2:]:
        m = re.search(r"[-+]?\d+(?:\.\d+)?", h)
        if not m or float(m.group()) <= 0:
            raise ERTFormatError(path, ln, f"expected a frequency (MHz) column header, found {h!r}")
        freqs.append(float(m.group()))
    survey = Survey(path=path, format="setraf-freq", value_kind="resistivity", depth_kind="setraf")
    for ln, row in rows[1:]:
        if len(row) != len(header):
            raise ERTFormatError(path, ln, f"expected {len(header)} fields, found {len(row)}")
        x = _float(path, ln, row[1], "survey point")
        for f, token in zip(freqs, row[2:], strict=True):
            rho = _positive(path, ln, _float(path, ln, token, f"value at {f} MHz"), "resistivity")
            survey.cells.append(Cell(x=x, depth=1000.0 / f, rho=rho))
    if not survey.cells:
        raise ERTFormatError(path, ln, "expected at least one data row")
    survey.title = rows[1][1][0] if len(rows) > 1 and rows[1][1] else path.stem
    survey.notes.append("depth = 1000 / frequency (MHz), the SETRAF app's convention")
    return survey


_SYSCAL_POS = [
    ("spa.1", "spa.2", "spa.3", "spa.4"),
    ("xa(m)", "xb(m)", "xm(m)", "xn(m)"),
    ("xa (m)", "xb (m)", "xm (m)", "xn (m)"),
]


def _read_syscal(path: Path, text: str) -> Survey:
    rows = _csv_rows(path, text)
    ln, header = rows[0]
    names = [h.strip().lower() for h in header]
    cols = None
    for variant in _SYSCAL_POS:
        if all(v in names for v in variant):
            cols = [names.index(v) for v in variant]
            break
    if cols is None:
        raise ERTFormatError(path, ln, "expected Syscal columns Spa.1..Spa.4 or xA(m)..xN(m)")
    rho_col = next((i for i, n in enumerate(names) if n == "rho" or n.startswith("rho (")), None)
    if rho_col is None:
        raise ERTFormatError(path, ln, "expected a 'Rho' (Ω·m) column")
    ip_col = next((i for i, n in enumerate(names) if n == "m" or n.startswith("m (mv/v)")), None)
    dev_col = next((i for i, n in enumerate(names) if n.startswith("dev")), None)
    survey = Survey(path=path, format="syscal-csv", title=path.stem)
    survey.value_kind = "apparent resistivity"
    survey.depth_kind = "pseudo"
    survey.ip_quantity, survey.ip_unit = (
        ("Chargeability", "mV/V") if ip_col is not None else (None, None)
    )
    positions: list[tuple[float | None, float | None, float | None, float | None]] = []
    values: list[tuple[float, float | None, float | None]] = []
    for ln, row in rows[1:]:
        if len(row) < len(header) - 1 or len(row) <= max([*cols, rho_col]):
            raise ERTFormatError(path, ln, f"expected {len(header)} fields, found {len(row)}")
        pos: list[float | None] = []
        for c, label in zip(cols, "ABMN", strict=True):
            v = _float(path, ln, row[c], f"x of electrode {label}")
            pos.append(None if abs(v) >= 999999 else v)
        rho = _float(path, ln, row[rho_col], "Rho")
        ip = _float(path, ln, row[ip_col], "M") if ip_col is not None and row[ip_col] else None
        dev = (
            _float(path, ln, row[dev_col], "Dev.") if dev_col is not None and row[dev_col] else None
        )
        positions.append((pos[0], pos[1], pos[2], pos[3]))
        values.append((rho, ip, None if dev is None else dev / 100.0))
    if not positions:
        raise ERTFormatError(path, ln, "expected at least one data row")
    survey.spacing = _min_step(p for pos in positions for p in pos if p is not None)
    _finish_quadrupoles(survey, positions, values, False, survey.spacing)
    survey.array = _guess_array(survey)
    return survey


def _read_xzr(path: Path, text: str) -> Survey:
    lines = _Lines(path, text, comment="#")
    survey = Survey(path=path, format="xz-rho", title=path.stem, value_kind="resistivity")
    first = lines.peek()
    if first is None:
        raise ERTFormatError(path, 1, "expected rows 'x z rho', found an empty file")
    depth_named = False
    if re.search(r"[A-Za-z]", first[1]) and not re.fullmatch(r"[-+0-9.eE\s,;]+", first[1]):
        ln, header = lines.next("a header")
        cols = [c.lower() for c in _fields(header)]
        if len(cols) < 3 or cols[0] != "x" or cols[1] not in ("z", "depth", "elevation"):
            raise ERTFormatError(
                path, ln, f"expected a header 'x, z (or depth), rho', found {header!r}"
            )
        depth_named = cols[1] == "depth"
    raw: list[tuple[float, float, float]] = []
    while lines.peek() is not None:
        ln, nums = lines.numbers("a row 'x z rho'", 3)
        raw.append((nums[0], nums[1], _positive(path, ln, nums[2], "resistivity")))
    if not raw:
        raise ERTFormatError(path, lines.last_line, "expected at least one row 'x z rho'")
    zs = [r[1] for r in raw]
    if depth_named:
        survey.cells = [Cell(x, abs(z), rho) for x, z, rho in raw]
    elif max(zs) <= 0:
        survey.cells = [Cell(x, -z, rho) for x, z, rho in raw]
    else:
        top = max(zs)
        survey.cells = [Cell(x, top - z, rho) for x, z, rho in raw]
        survey.notes.append(
            f"z taken as elevation; depth measured from the highest point ({top:g} m)"
        )
    if len({x for x, _, _ in raw}) == 1:
        survey.depth_kind = "log"
        survey.notes.append(f"a single x ({raw[0][0]:g} m): read as a vertical log")
    else:
        survey.depth_kind = "model"
    return survey


# ---------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------
FORMATS: dict[str, Callable[[Path, str], Survey]] = {
    "res2dinv": _read_res2dinv,
    "unified": _read_unified,
    "res2dinv-xyz": _read_xyz,
    "setraf-dat": _read_setraf_dat,
    "setraf-csv": _read_setraf_csv,
    "setraf-freq": _read_setraf_freq,
    "syscal-csv": _read_syscal,
    "xz-rho": _read_xzr,
}


def _content_lines(text: str, limit: int = 8) -> Iterator[str]:
    n = 0
    for raw in text.splitlines():
        if raw.strip():
            yield raw.strip()
            n += 1
            if n >= limit:
                return


def sniff_format(path: str | os.PathLike[str], text: str) -> str:
    """Guess a survey file's format from its content (and name).

    Raises:
        ERTFormatError: No known format matches.
    """
    p = Path(path)
    head = list(_content_lines(text))
    uncommented = [h for h in head if not h.startswith("#")]
    if uncommented and re.fullmatch(r"\d+\s*(#.*)?", uncommented[0]) and head[0].startswith("#"):
        return "unified"  # unified format with a comment block first (gimli slagdump)
    if not head:
        raise ERTFormatError(p, 1, "expected survey data, found an empty file")
    first = head[0]
    low = first.lower()
    if first.startswith("/"):
        return "res2dinv-xyz"
    if low.startswith("projet,essai") or low.startswith("projet;essai"):
        return "setraf-csv"
    if low.split()[:1] == ["survey-point"]:
        return "setraf-dat"
    if "spa.1" in low or re.search(r"\bxa\s?\(m\)", low):
        return "syscal-csv"
    if "freq" in p.name.lower() and ("," in first or ";" in first):
        return "setraf-freq"
    if re.fullmatch(r"\d+\s*(#.*)?", first):
        return "unified"
    if len(head) >= 3:
        try:
            float(_fields(head[1])[0])
            code = _fields(head[2])[0].rstrip("RLrl")
            if len(_fields(head[1])) == 1 and code.isdigit() and len(_fields(head[2])) == 1:
                return "res2dinv"
        except (ValueError, IndexError):
            pass
    data_line = head[1] if re.search(r"[A-Za-z]", first) and len(head) > 1 else first
    if len(_fields(data_line)) == 3:
        try:
            [float(t) for t in _fields(data_line)]
            return "xz-rho"
        except ValueError:
            pass
    raise ERTFormatError(
        p,
        1,
        "could not recognise the survey format; expected one of: " + ", ".join(FORMATS),
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
        ERTFormatError: The content does not match the format (names file, line and what
            was expected).

    Example:
        >>> s = load_survey("examples/two_layer_wenner.dat")
        >>> round(min(s.values)), round(max(s.values))
        (54, 221)
    """
    p = Path(path)
    text = _read_text(p)
    fmt = format or sniff_format(p, text)
    reader = FORMATS.get(fmt)
    if reader is None:
        raise ValueError(f"unknown survey format {fmt!r}; expected one of: {', '.join(FORMATS)}")
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
