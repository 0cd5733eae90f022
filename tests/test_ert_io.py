"""Readers against the real third-party files in tests/data/ert and malformed variants."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from langchain_setraf.ert import ERTFormatError, load_survey
from langchain_setraf.ert.geometry import edwards_median_depth, geometric_factor

# file -> (format, electrodes, data, cells, value min, value max) as printed in SOURCES.md
EXPECTED = {
    "setraf_test_ert_data.csv": ("setraf-csv", 50, 0, 150, "0.45", "3970.9"),
    "setraf_readme_example.dat": ("setraf-dat", 0, 0, 3, "0.36289272", "0.41214067"),
    "gimli_bedrock.dat": ("unified", 64, 1223, 1223, "17.7", "153.8"),
    "gimli_bedrock_directpush.txt": ("xz-rho", 0, 0, 62, "7.5", "469"),
    "gimli_slagdump.ohm": ("unified", 38, 222, 222, "4.5", "32"),
    "resipy_res2dinv_dd.dat": ("res2dinv", 61, 591, 591, "180", "2528"),
    "geoelectrics_p3_wenner_ip.dat": ("res2dinv", 34, 176, 176, "35", "461"),
    "geoelectrics_p3_dipoledipole_model.xyz": ("res2dinv-xyz", 0, 0, 342, "9", "14890"),
}


def _close(value: float, printed: str) -> bool:
    """Equal to ``printed`` at its printed precision (half a unit of its last digit)."""
    decimals = len(printed.partition(".")[2])
    return abs(value - float(printed)) <= 0.5 * 10**-decimals + 1e-12


def test_every_real_file_is_covered(ert_dir: Path) -> None:
    names = {p.name for p in ert_dir.iterdir() if p.suffix != ".md"}
    assert names == set(EXPECTED), "a file in tests/data/ert has no expected counts here"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_file_counts_and_ranges(ert_dir: Path, name: str) -> None:
    fmt, n_el, n_data, n_cells, lo, hi = EXPECTED[name]
    s = load_survey(ert_dir / name)
    assert s.format == fmt
    assert s.n_electrodes == n_el
    assert s.n_data == n_data
    assert s.n_cells == n_cells
    vmin, vmax = s.value_range
    assert _close(vmin, lo), (vmin, lo)
    assert _close(vmax, hi), (vmax, hi)


def test_res2dinv_details(ert_dir: Path) -> None:
    dd = load_survey(ert_dir / "resipy_res2dinv_dd.dat")
    assert dd.array == "dipole-dipole" and dd.spacing == 3.0
    assert len(dd.topography) == 61 and dd.topography[0] == (0.0, 175.0)
    first = dd.data[0]  # the first row pyGIMLi loses: 0.00 9.00 6.0 1264.93
    assert first.rhoa == pytest.approx(1264.926766)
    # x-location = first electrode: C2 at 0, C1 at 9, P1 at 63, P2 at 72 (a = 9, n = 6)
    xs = [dd.electrodes[i][0] for i in (first.b, first.a, first.m, first.n)]  # type: ignore[index]
    assert xs == [0.0, 9.0, 63.0, 72.0]
    assert first.pseudo_depth == pytest.approx(1.730 * 9, rel=2e-3)

    ip = load_survey(ert_dir / "geoelectrics_p3_wenner_ip.dat")
    assert ip.ip_quantity == "Phase Angle" and ip.ip_unit == "mrad"
    assert ip.data[0].ip == pytest.approx(2.02)
    assert any("snapped" in n for n in ip.notes)  # the 1 m offset quirk
    assert all(e[1] == 519 for e in ip.electrodes[:3])  # elevations from topography


def test_xyz_sensitivity_and_rms(ert_dir: Path) -> None:
    s = load_survey(ert_dir / "geoelectrics_p3_dipoledipole_model.xyz")
    assert s.rms_percent == pytest.approx(3.4)
    assert s.has_sensitivity
    depths = sorted({c.depth for c in s.cells})
    assert len(depths) == 18 and depths[0] == pytest.approx(0.34) and depths[-1] == 13.0
    assert s.title == "Aichig_Sportplatz_DipolDipol_04_S-N"


def test_slagdump_rhoa_from_resistance(ert_dir: Path) -> None:
    s = load_survey(ert_dir / "gimli_slagdump.ohm")
    q = s.data[-1]  # last row of the file: 2 38 14 26 0.0510622
    assert q.resistance == pytest.approx(0.0510622)
    assert q.rhoa == pytest.approx(q.k * q.resistance)  # type: ignore[operator]
    assert any("resistances only" in n for n in s.notes)


def test_geometry_matches_reference_tables() -> None:
    assert edwards_median_depth(0, 3, 1, 2) == pytest.approx(0.519, abs=1e-3)  # Wenner α
    assert edwards_median_depth(1, 0, 2, 3) == pytest.approx(0.416, abs=1e-3)  # DD n=1
    assert edwards_median_depth(0, 7, 3, 4) == pytest.approx(1.318, abs=1e-3)  # WS n=3
    assert geometric_factor(0, 3, 1, 2) == pytest.approx(2 * math.pi)  # 2πa, a = 1
    assert abs(geometric_factor(1, 0, 2, 3)) == pytest.approx(6 * math.pi)  # πn(n+1)(n+2)a


def test_bundled_example_matches_its_generator() -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[1] / "examples"
    spec = importlib.util.spec_from_file_location("gen", root / "make_two_layer_wenner.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (root / "two_layer_wenner.dat").read_text() == gen.render()
    # analytical limits: small spacing → ρ1, large spacing → towards ρ2
    assert gen.wenner_two_layer(0.01) == pytest.approx(50, rel=1e-3)
    assert gen.wenner_two_layer(10000) == pytest.approx(500, rel=0.01)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_general_array_with_topography(tmp_path: Path) -> None:
    text = (
        "general array test\n1.0\n11\n0\nType of measurement (0=app. resistivity,1=resistance)\n"
        "0\n2\n1\n0\n"
        "4 0 13 30 13.03 10 13.12 20 13.08 7366.8\n"
        "4 0 13 3 13 1 13 2 13 120.5\n"
        "0\n0\n"
    )
    s = load_survey(_write(tmp_path, "g.dat", text))
    assert s.format == "res2dinv" and s.array == "general"
    assert s.n_data == 2 and s.data[0].rhoa == 7366.8
    a, b, m, n = (s.electrodes[i][0] for i in (s.data[0].a, s.data[0].b, s.data[0].m, s.data[0].n))  # type: ignore[index]
    assert (a, b, m, n) == (0, 30, 10, 20)


def test_general_array_resistances(tmp_path: Path) -> None:
    text = "t\n1\n11\n1\nType of measurement\n1\n1\n1\n0\n4 0 0 3 0 1 0 2 0 2.0\n0\n"
    s = load_survey(_write(tmp_path, "r.dat", text))
    assert s.data[0].resistance == 2.0
    assert s.data[0].rhoa == pytest.approx(2 * math.pi * 2.0)


def test_syscal_csv(tmp_path: Path) -> None:
    # a Wenner α quadrupole (a = 2 m) over a 100 Ω·m half-space: Vp/In = ρ/K
    header = ",El-array,Spa.1,Spa.2,Spa.3,Spa.4,Rho ,Dev., M  ,Sp  ,Vp  ,In  \r\n"
    rows = ",Wenner,0.00,6.00,2.00,4.00,100.0,0.1,2.5,0.0,795.8,100.0\r\n"
    rows += ",Wenner,2.00,8.00,4.00,6.00,110.0,0.2,2.0,0.0,875.4,100.0\r\n"
    s = load_survey(_write(tmp_path, "syscal.csv", header + rows))
    assert s.format == "syscal-csv" and s.n_data == 2 and s.n_electrodes == 5
    assert s.data[0].k == pytest.approx(4 * math.pi)
    assert s.data[0].ip == 2.5 and s.array == "wenner-alpha"


def test_syscal_remote_electrode(tmp_path: Path) -> None:
    text = "xA(m),xB(m),xM(m),xN(m),Rho (Ohm.m),Dev.\n0,9999999.00,2,4,50,0.1\n"
    s = load_survey(_write(tmp_path, "pd.csv", text))
    assert s.data[0].b is None and s.n_electrodes == 3


def test_unified_with_u_and_i_and_units(tmp_path: Path) -> None:
    text = "4\n# x z\n0 0\n1 0\n2 0\n3 0\n1\n# a b m n u/mV i/mA\n1 4 2 3 159.15 100\n"
    s = load_survey(_write(tmp_path, "ui.dat", text))
    q = s.data[0]
    assert q.resistance == pytest.approx(1.5915)
    assert q.rhoa == pytest.approx(2 * math.pi * 1.5915)


def test_setraf_freq(tmp_path: Path) -> None:
    text = "project,survey point,10 MHz,100 MHz\nP1,1,12.5,30\nP1,2,15,45\n"
    s = load_survey(_write(tmp_path, "freq.dat", text))
    assert s.format == "setraf-freq" and s.n_cells == 4
    assert sorted({c.depth for c in s.cells}) == [10.0, 100.0]


def test_plain_xzr_with_header(tmp_path: Path) -> None:
    s = load_survey(_write(tmp_path, "m.csv", "x,depth,rho\n0,1,10\n1,1,20\n0,2,30\n"))
    assert s.format == "xz-rho" and s.depth_kind == "model" and s.n_cells == 3


# --- malformed input: ERTFormatError with file, line and expectation, never a partial result
MALFORMED = {
    "res2dinv_short.dat": ("t\n1.0\n1\n5\n1\n0\n1.5 1 10\n", r"declares 5 data points"),
    "res2dinv_bad_number.dat": ("t\n1.0\n1\n2\n1\n0\n1.5 1 10\n2.5 1 abc\n0\n", r":8: expected a number"),
    "res2dinv_cols.dat": ("t\n1.0\n3\n1\n0\n0\n0 1 10\n0\n", r":7: expected 4 numbers"),
    "res2dinv_array9.dat": ("t\n1.0\n9\n1\n0\n0\n", r":3: array type 9 is not supported"),
    "res2dinv_spacing.dat": ("t\n-2\n1\n1\n0\n0\n0 1 10\n", r":2: expected a positive electrode spacing"),
    "unified_index.dat": ("2\n# x z\n0 0\n1 0\n1\n# a b m n rhoa\n1 2 3 4 10\n", r":7: expected electrode m in 0..2"),
    "unified_token.dat": ("2\n# x z\n0 0\n1 0\n1\n# a b m n foo\n1 0 2 0 10\n", r":6: unknown data column token 'foo'"),
    "unified_truncated.dat": ("3\n# x z\n0 0\n1 0\n", r"expected electrode 3 of 3, found end of file"),
    "xyz_count.xyz": ("/Number of blocks is 3\n/ X Depth Resistivity\n1 -1 10\n2 -1 20\n", r"declares 3 blocks, found 2"),
    "setraf.csv": ("Projet,Essai,ρ_a1,ρ_a2\nP,T1,1.0\n", r":2: expected 4 fields"),
    "setraf_neg.dat": ("survey-point depth data project\n1 -2 -0.3 2025\n", r":2: expected a positive resistivity"),
    "empty.dat": ("\n\n", r"empty file"),
    "garbage.txt": ("hello world\nthis is not a survey\n", r"could not recognise the survey format"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_gives_specific_error(tmp_path: Path, name: str) -> None:
    text, pattern = MALFORMED[name]
    path = _write(tmp_path, name, text)
    with pytest.raises(ERTFormatError, match=pattern) as info:
        load_survey(path)
    assert str(path) in str(info.value)
    assert info.value.path == path


def test_truncated_real_files_fail_cleanly(ert_dir: Path, tmp_path: Path) -> None:
    for name in ("resipy_res2dinv_dd.dat", "gimli_bedrock.dat", "geoelectrics_p3_wenner_ip.dat"):
        lines = (ert_dir / name).read_text().splitlines()
        cut = _write(tmp_path, name, "\n".join(lines[: len(lines) // 2]) + "\n")
        with pytest.raises(ERTFormatError, match=r"expected|declares") as info:
            load_survey(cut)
        assert info.value.line is not None


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.dat"):
        load_survey(tmp_path / "nope.dat")
    with pytest.raises(ERTFormatError, match="directory"):
        load_survey(tmp_path)


def test_binary_file_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.dat"
    p.write_bytes(b"\x00\x01\x02GGUF")
    with pytest.raises(ERTFormatError, match="binary"):
        load_survey(p)
