"""Real third-party survey files (tests/data/ert) with the faults real instruments write.

Each test edits one real file in memory the way field data goes wrong (a measurement row
with coincident electrodes, an exporter's non-standard flag) and checks that the reader
keeps every usable row, names the dropped line in a note, and refuses the file only when
nothing usable is left. The files are copied into tests/data/ert with their sources and licences.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_setraf.ert import ERTFormatError, load_survey


def _edit(src: Path, dst: Path, old: str, new: str, count: int = 1) -> Path:
    text = src.read_bytes().decode("utf-8")
    assert text.count(old) >= count, (src.name, old)
    dst.write_bytes(text.replace(old, new, count).encode("utf-8"))
    return dst


def _dropped_note(notes: list[str]) -> str:
    return next(n for n in notes if "unusable measurement row(s) dropped" in n)


def test_unified_row_with_b_on_m_is_dropped(ert_dir: Path, tmp_path: Path) -> None:
    # line 69 of gimli_bedrock.dat: '1 4 2 3' -> '1 2 2 3' (B and M on electrode 2)
    path = _edit(
        ert_dir / "gimli_bedrock.dat", tmp_path / "bedrock.dat", "   1\t   4\t", "   1\t   2\t"
    )
    s = load_survey(path)
    assert s.n_data == 1222 and s.n_electrodes == 64
    assert "line 69: a current and a potential electrode are at the same position" in (
        _dropped_note(s.notes)
    )


def test_res2dinv_row_with_n_zero_is_dropped(ert_dir: Path, tmp_path: Path) -> None:
    # the first dipole-dipole row (line 7) gets n = 0: C1 and P1 coincide
    path = _edit(
        ert_dir / "resipy_res2dinv_dd.dat",
        tmp_path / "dd.dat",
        "    0.00     9.00   6.000000",
        "    0.00     9.00   0.000000",
    )
    s = load_survey(path)
    assert s.n_data == 590
    assert "line 7: electrode spacing a = 9, n = 0" in _dropped_note(s.notes)


def test_res2dinv_ip_flag_two_before_the_ip_block(ert_dir: Path, tmp_path: Path) -> None:
    src = ert_dir / "geoelectrics_p3_wenner_ip.dat"
    path = _edit(src, tmp_path / "ip.dat", "176\n1\n1\nPhase Angle", "176\n1\n2\nPhase Angle")
    s, ref = load_survey(path), load_survey(src)
    assert [q.ip for q in s.data] == [q.ip for q in ref.data]
    assert "IP flag 2 on line 6 read as 1 (IP data present)" in s.notes


def test_every_row_unusable_in_a_real_file_is_refused(ert_dir: Path, tmp_path: Path) -> None:
    src = ert_dir / "geoelectrics_p3_wenner_ip.dat"
    text = src.read_text(encoding="utf-8").splitlines()
    # rows 'x a rho ip' from line 10: set every electrode spacing a to 0
    rows = [i for i, ln in enumerate(text) if i >= 9 and len(ln.split()) == 4]
    for i in rows:
        x, _, rho, ip = text[i].split()
        text[i] = f"{x} 0.0 {rho} {ip}"
    path = tmp_path / "all_zero_a.dat"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(
        ERTFormatError, match=r"expected at least one usable data row: 176 "
    ) as info:
        load_survey(path)
    assert info.value.line == 10
