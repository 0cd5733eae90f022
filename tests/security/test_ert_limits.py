"""Hostile survey files: too big, too many rows, too wide; and the stated memory bound.

Each big file is written to ``tmp_path`` and read by ``load_survey`` in a child process
that reports its own peak RSS growth (``ru_maxrss`` after the read minus before it, the
imports done), compared with the bound the readers state
(:func:`~langchain_setraf.ert.readers.read_memory_bound`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_setraf.ert import load_survey
from langchain_setraf.ert.readers import (
    MAX_FILE_BYTES,
    MAX_LINE_CHARS,
    MAX_LINES,
    MAX_READINGS,
    line_count,
    read_memory_bound,
)
from langchain_setraf.ert.survey import ERTFormatError

_CHILD = r"""
import json, resource, sys
from langchain_setraf.ert import load_survey
from langchain_setraf.ert.survey import ERTFormatError

def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

before = peak()
out = {}
try:
    s = load_survey(sys.argv[1])
    out["readings"] = len(s.data) + len(s.cells)
except ERTFormatError as exc:
    out["error"] = str(exc)
out["growth"] = peak() - before
print(json.dumps(out))
"""


def _read_in_child(path: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def _xz_rows(path: Path, n: int, newline: str = "\n") -> Path:
    with path.open("w", encoding="ascii", newline="") as f:
        f.write(f"x z rho{newline}")
        for i in range(n):
            f.write(f"{i % 1000 * 0.5:.1f} {-(i // 1000) * 0.25:.2f} {10 + i % 97:.1f}{newline}")
    return path


def test_two_million_rows_are_refused_before_any_reader_builds_them(tmp_path: Path) -> None:
    # the attack: 2 M rows took 1.1 GB and 13.5 s; here 14 MB, under the byte limit
    path = tmp_path / "two_million.txt"
    path.write_text("x z rho\n" + "1 -2 3\n" * 2_000_000, encoding="ascii")
    size = path.stat().st_size
    assert size < MAX_FILE_BYTES
    out = _read_in_child(path)
    assert "readings" not in out, "the 2 M-row file was read"
    error = str(out["error"])
    assert str(path) in error
    assert f"file of {size} bytes has 2000001 lines" in error
    assert f"over the limit of {MAX_LINES} lines (MAX_LINES)" in error
    growth = int(out["growth"])  # type: ignore[call-overload]
    # refused at the cost of its text: raw bytes + the decoded str, no per-line object
    assert growth <= 3 * size + 16 * 2**20, f"refusing cost {growth / 2**20:.0f} MiB"


def test_rows_ended_by_carriage_returns_are_counted_too() -> None:
    text = "x z rho\r" + "1 -2 3\r" * MAX_LINES
    assert line_count(text) == MAX_LINES + 1 == len(text.splitlines())
    for sample in ("a\nb", "a\r\nb\r\n", "a\x0cb\u2028c", "", "\n\n", "a\x85b\rc"):
        assert line_count(sample) == len(sample.splitlines()), repr(sample)


def test_a_file_over_the_byte_limit_is_refused_from_its_size_alone(tmp_path: Path) -> None:
    path = tmp_path / "huge.dat"
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing to read if the reader reads it
    out = _read_in_child(path)
    error = str(out["error"])
    assert f"{path}: file of {MAX_FILE_BYTES + 1} bytes is over the limit of" in error
    assert "(MAX_FILE_BYTES, 32 MiB)" in error
    assert int(out["growth"]) < 4 * 2**20, "the file was read before its size was checked"  # type: ignore[call-overload]


def test_a_line_over_the_width_limit_is_refused_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_text("x z rho\n1 -1 10\n2 -1 " + "1" * MAX_LINE_CHARS + "\n", encoding="ascii")
    with pytest.raises(
        ERTFormatError, match=rf"wide\.txt:3: line of {MAX_LINE_CHARS + 5} characters"
    ) as err:
        load_survey(path)
    assert f"over the limit of {MAX_LINE_CHARS} (MAX_LINE_CHARS)" in str(err.value)


def _setraf_csv(path: Path, tests: int, columns: int) -> Path:
    head = "Projet,Essai," + ",".join(f"ρ_a{j}" for j in range(1, columns + 1))
    rows = [f"P1,{t}," + ",".join("12.5" for _ in range(columns)) for t in range(tests)]
    path.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
    return path


def test_one_reading_too_many_is_refused(tmp_path: Path) -> None:
    # a few lines, many values each: the line count alone would not bound it
    path = _setraf_csv(tmp_path / "many.csv", MAX_READINGS // 1000, 1000)
    assert len(load_survey(path).cells) == MAX_READINGS
    over = _setraf_csv(tmp_path / "over.csv", MAX_READINGS // 1000 + 1, 1000)
    with pytest.raises(
        ERTFormatError, match=rf"over\.csv:{MAX_READINGS // 1000 + 2}: more than"
    ) as err:
        load_survey(over)
    assert f"{MAX_READINGS} readings (MAX_READINGS)" in str(err.value)


def _syscal(path: Path, n: int) -> Path:
    extra = [f"M{i}" for i in range(1, 21)]
    head = ["El-array", "xA (m)", "xB (m)", "xM (m)", "xN (m)", "Rho (Ohm.m)", "Dev. M"]
    head += ["Dev. Rho (%)", "M (mV/V)", "SP (mV)", "VMN (mV)", "IAB (mA)", *extra]
    with path.open("w", encoding="ascii") as f:
        f.write(";".join(head) + "\n")
        k = 0
        while k < n:
            for a in range(300):
                for s in range(1, 30):
                    if k == n:
                        return path
                    vals = [a, a + 3 * s, a + s, a + 2 * s]
                    row = [f"{v:.2f}" for v in vals]
                    row += [f"{100 + k % 37}.25", "0.20", "0.1", "2.5", "3.1", "800.0", "100.0"]
                    row += [f"{(k * 7 + i) % 100}.{i}" for i in range(20)]
                    f.write("Wenner;" + ";".join(v.replace(".", ",") for v in row) + "\n")
                    k += 1
    return path


def _padded(path: Path) -> Path:
    """Lines just under MAX_LINE_CHARS, the file just under MAX_FILE_BYTES, one emoji."""
    pad = " " * (MAX_LINE_CHARS - 40)
    n = MAX_FILE_BYTES // (MAX_LINE_CHARS - 20) - 2
    with path.open("w", encoding="utf-8") as f:
        f.write("x z rho # ρ in Ω·m 😀\n")  # a non-BMP character: the str takes 4 bytes/char
        for i in range(n):
            f.write(f"{i * 0.5:.1f} -1.0 {10 + i % 97:.1f}{pad}\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["rows", "syscal", "readings", "long-lines"])
def test_a_file_just_under_the_limits_reads_within_the_stated_memory_bound(
    tmp_path: Path, shape: str
) -> None:
    if shape == "rows":
        path = _xz_rows(tmp_path / "rows.txt", MAX_LINES - 1)
    elif shape == "syscal":
        path = _syscal(tmp_path / "syscal.csv", MAX_LINES - 1)
    elif shape == "readings":
        path = _setraf_csv(tmp_path / "readings.csv", MAX_READINGS // 50, 50)
    else:
        path = _padded(tmp_path / "long.txt")
    size = path.stat().st_size
    assert size <= MAX_FILE_BYTES
    lines = line_count(path.read_text(encoding="utf-8"))
    assert lines <= MAX_LINES
    out = _read_in_child(path)
    assert "error" not in out, out.get("error")
    readings = int(out["readings"])  # type: ignore[call-overload]
    assert readings > 0
    growth = int(out["growth"])  # type: ignore[call-overload]
    bound = read_memory_bound(size, lines, readings)
    assert growth <= bound, (
        f"{shape}: {size} bytes, {lines} lines, {readings} readings grew peak RSS by "
        f"{growth / 2**20:.0f} MiB, over the stated bound of {bound / 2**20:.0f} MiB"
    )
    assert bound <= read_memory_bound(MAX_FILE_BYTES, MAX_LINES, MAX_READINGS)
