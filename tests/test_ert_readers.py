"""Readers against format samples written from the format descriptions (tests/data/ert_formats).

Each sample's source section and expected counts are in tests/data/ert_formats/README.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from langchain_setraf.ert import ERTFormatError, Survey, load_survey
from langchain_setraf.ert.readers import FORMATS, sniff_format

SAMPLES = Path(__file__).resolve().parent / "data" / "ert_formats"
PI = math.pi

# file -> (format, array, electrodes, data, cells)
EXPECTED: dict[str, tuple[str, str | None, int, int, int]] = {
    "r2d_general_resistance_topo.dat": ("res2dinv", "general", 5, 5, 5),
    "r2d_general_ip_errors_topo_list.dat": ("res2dinv", "general (wenner-schlumberger)", 7, 4, 4),
    "r2d_wenner_first_electrode.dat": ("res2dinv", "wenner-alpha", 9, 6, 6),
    "r2d_dipole_dipole_ip_topo.dat": ("res2dinv", "dipole-dipole", 6, 5, 5),
    "r2d_pole_dipole_remote.dat": ("res2dinv", "pole-dipole", 6, 4, 4),
    "r2d_schlumberger_resistance.dat": ("res2dinv", "wenner-schlumberger", 8, 3, 3),
    "unified_ui_percent.ohm": ("unified", "mixed", 4, 2, 2),
    "unified_xyz_topo.dat": ("unified", "wenner-alpha", 5, 2, 2),
    "syscal_prosys3_semicolon.csv": ("syscal-csv", "mixed", 5, 3, 3),
    "syscal_tab_vp_in.txt": ("syscal-csv", "wenner-alpha", 5, 2, 2),
    "syscal_spa_pole_dipole.csv": ("syscal-csv", "pole-dipole", 5, 2, 1),
    "syscal_prosys3_degenerate_rows.csv": ("syscal-csv", "dipole-dipole", 6, 3, 3),
    "r2d_dipole_dipole_zero_n.dat": ("res2dinv", "dipole-dipole", 5, 3, 3),
    "r2d_general_coincident_row.dat": ("res2dinv", "general", 5, 2, 2),
    "unified_zero_current.ohm": ("unified", "mixed", 4, 2, 2),
    "syscal_spa_rho_sign.csv": ("syscal-csv", "pole-dipole", 6, 3, 2),
    "r2d_general_spectral_ip_flag11.dat": ("res2dinv", "general (wenner-alpha)", 5, 2, 2),
    "unified_extra_tokens.ohm": ("unified", "mixed", 4, 2, 2),
    "unified_map_line.dat": ("unified", "wenner-alpha", 5, 2, 2),
    "setraf_csv_zero_reading.csv": ("setraf-csv", None, 3, 0, 4),
    "xz_rho_nodata.txt": ("xz-rho", None, 0, 0, 2),
    "unified_nan_values.dat": ("unified", "wenner-alpha", 4, 2, 2),
    "r2d_res2dmod_extra_sections.dat": ("res2dinv", "wenner-alpha", 6, 3, 3),
}


def _load(name: str) -> Survey:
    return load_survey(SAMPLES / name)


def _xs(s: Survey, i: int) -> tuple[float | None, ...]:
    q = s.data[i]
    return tuple(None if e is None else s.electrodes[e][0] for e in (q.a, q.b, q.m, q.n))


def test_every_sample_is_covered() -> None:
    names = {p.name for p in SAMPLES.iterdir() if p.suffix != ".md"}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_counts(name: str) -> None:
    fmt, array, n_el, n_data, n_cells = EXPECTED[name]
    text = (SAMPLES / name).read_text(encoding="utf-8")
    assert sniff_format(SAMPLES / name, text) == fmt
    s = _load(name)
    assert (s.format, s.array) == (fmt, array)
    assert (s.n_electrodes, s.n_data, s.n_cells) == (n_el, n_data, n_cells)


# --- Res2DInv -----------------------------------------------------------------------
def test_general_array_resistances_with_integrated_topography() -> None:
    s = _load("r2d_general_resistance_topo.dat")
    assert s.electrodes == [(x, 100.0 + 0.5 * x) for x in (0.0, 1.0, 2.0, 3.0, 4.0)]
    resistances = [15.9155, 16.5, -1.0, 2.0, 5.0]
    factors = [2 * PI, 2 * PI, -6 * PI, 12 * PI, 2 * PI]
    assert [q.resistance for q in s.data] == resistances
    assert [q.k for q in s.data] == pytest.approx(factors)
    assert [q.rhoa for q in s.data] == pytest.approx(
        [k * r for k, r in zip(factors, resistances, strict=True)]
    )
    assert _xs(s, 3) == (0.0, None, 2.0, 3.0)  # 3 electrodes: C1 P1 P2
    assert _xs(s, 4) == (0.0, None, 1.0, None)  # 2 electrodes: C1 P1
    assert any("integrated topography" in n for n in s.notes)
    assert any("resistances" in n for n in s.notes)


def test_general_array_ip_errors_and_topography_list() -> None:
    s = _load("r2d_general_ip_errors_topo_list.dat")
    assert (s.ip_quantity, s.ip_unit) == ("Chargeability", "mV/V")
    assert [q.ip for q in s.data] == [8.5, 9.0, 7.5, 7.0]
    assert [q.err for q in s.data] == pytest.approx([0.02, 0.05, 0.01, 0.02])
    assert [q.rhoa for q in s.data] == [120.0, 110.0, 130.0, 125.0]
    assert s.topography == [(0.0, 50.0), (2.0, 51.0), (4.0, 52.0), (6.0, 50.0)]
    assert [z for _, z in s.electrodes] == pytest.approx([50, 50.5, 51, 51.5, 52, 51, 50])
    assert abs(s.data[2].k or 0) == pytest.approx(6 * PI)  # Schlumberger n = 2
    assert any("along the ground surface" in n for n in s.notes)  # topography flag 2


def test_index_wenner_first_electrode() -> None:
    s = _load("r2d_wenner_first_electrode.dat")
    assert _xs(s, 0) == (0.0, 6.0, 2.0, 4.0)  # C1 C2 P1 P2 = A B M N
    assert s.data[0].rhoa == 54.2 and s.data[-1].rhoa == 88.8
    assert s.data[0].pseudo_depth == pytest.approx(0.519 * 2, abs=2e-3)
    assert s.topography == [] and all(z == 0.0 for _, z in s.electrodes)


def test_index_dipole_dipole_midpoint_ip_topography() -> None:
    s = _load("r2d_dipole_dipole_ip_topo.dat")
    assert _xs(s, 0) == (1.0, 0.0, 2.0, 3.0)  # C2 C1 P1 P2 from the left
    assert _xs(s, 4) == (1.0, 0.0, 4.0, 5.0)  # n = 3
    assert [q.ip for q in s.data] == [3.1, 3.4, 4.0, 4.2, 4.8]
    assert [z for _, z in s.electrodes] == pytest.approx([10.0, 10.2, 10.4, 10.6, 10.8, 11.0])
    assert len(s.topography) == 8
    assert not any("shifted" in n for n in s.notes)  # first electrode already on point 2
    assert abs(s.data[0].k or 0) == pytest.approx(6 * PI)


def test_index_pole_dipole_forward_reverse_and_remote_block() -> None:
    s = _load("r2d_pole_dipole_remote.dat")
    assert _xs(s, 0) == (0.0, None, 1.0, 2.0)
    assert _xs(s, 1) == (0.0, None, 2.0, 3.0)
    assert _xs(s, 2) == (5.0, None, 4.0, 3.0)  # reverse: P2 P1 C1
    assert _xs(s, 3) == (5.0, None, 3.0, 2.0)
    assert s.data[0].k == pytest.approx(4 * PI)  # 2π n(n+1) a
    assert any("remote electrode C2" in n for n in s.notes)


def test_index_resistances_become_apparent_resistivity() -> None:
    s = _load("r2d_schlumberger_resistance.dat")
    assert [q.rhoa for q in s.data] == pytest.approx([2 * PI * 10, 6 * PI * 4, 12 * PI * 2])
    assert [q.resistance for q in s.data] == [10.0, 4.0, 2.0]


def test_topography_first_electrode_number_shifts_the_line(tmp_path: Path) -> None:
    # electrodes start at x = 10 m; the file says the first one is topography point 1 (x = 0)
    text = "t\n1\n1\n1\n0\n0\n10 1 50\n1\n3\n0 5\n1 6\n2 7\n1\n0\n"
    s = load_survey(_write(tmp_path, "shift.dat", text))
    assert [e[0] for e in s.electrodes] == [0.0, 1.0, 2.0, 3.0]
    assert [e[1] for e in s.electrodes] == [5.0, 6.0, 7.0, 7.0]  # x = 3 beyond the list
    assert any("shifted by -10 m" in n for n in s.notes)
    assert any("outside the topography" in n for n in s.notes)


def test_spectral_ip_keeps_the_first_gate(tmp_path: Path) -> None:
    text = "t\n1\n1\n1\n1\n1\nChargeability\nmV/V\n3 0.1 0.2 0.2 0.2 1 1\n1.5 1 50 4 3 2\n0\n"
    s = load_survey(_write(tmp_path, "spec.dat", text))
    assert s.data[0].ip == 4.0 and any("3 gates" in n for n in s.notes)


# --- unified ------------------------------------------------------------------------
def test_unified_tokens_units_comments_and_valid() -> None:
    s = _load("unified_ui_percent.ohm")
    assert [q.resistance for q in s.data] == pytest.approx([1.591549, -0.265258])
    assert [q.rhoa for q in s.data] == pytest.approx([10.0, 5.0], rel=1e-6)
    assert [q.err for q in s.data] == pytest.approx([0.02, 0.03])
    assert [q.ip for q in s.data] == [5.5, 6.0] and s.ip_unit == "mrad"
    assert any("valid = 0" in n for n in s.notes)


def test_unified_xyz_sensors_and_topography_block() -> None:
    s = _load("unified_xyz_topo.dat")
    assert s.electrodes == [(0, 10.0), (2, 10.5), (4, 11.0), (6, 11.5), (8, 12.0)]
    assert s.topography == [(-2, 9.8), (10, 12.3), (12, 12.5)]
    assert [q.rhoa for q in s.data] == [250.0, 240.0] and s.data[0].err == 0.03


def test_unified_given_geometric_factor_zero_drops_the_row(tmp_path: Path) -> None:
    text = "3\n0 0\n1 0\n2 0\n2\n# A B M N R K\n1 0 2 3 2.0 0\n1 0 2 3 2.0 12.5\n"
    s = load_survey(_write(tmp_path, "k0.ohm", text))
    assert [q.rhoa for q in s.data] == [25.0]
    assert "line 7: geometric factor k = 0: no apparent resistivity" in s.notes[-1]


def test_unified_given_geometric_factor(tmp_path: Path) -> None:
    text = "3\n0 0\n1 0\n2 0\n1\n# A B M N R K\n1 0 2 3 2.0 12.5\n"
    s = load_survey(_write(tmp_path, "k.ohm", text))
    assert s.data[0].k == 12.5 and s.data[0].rhoa == 25.0
    assert not any("flat-earth" in n for n in s.notes)  # K came from the file


# --- Syscal -------------------------------------------------------------------------
def test_syscal_semicolons_and_decimal_commas() -> None:
    s = _load("syscal_prosys3_semicolon.csv")
    assert [q.rhoa for q in s.data] == [100.5, 110.25, 95.0]
    assert [q.err for q in s.data] == pytest.approx([0.001, 0.002, 0.003])
    assert [q.ip for q in s.data] == [2.5, 2.0, 1.5]
    assert _xs(s, 2) == (0.0, 2.0, 4.0, 6.0)


def test_syscal_tabs_elevations_and_rho_from_vp_in() -> None:
    s = _load("syscal_tab_vp_in.txt")
    assert [q.rhoa for q in s.data] == pytest.approx([100.0, 110.0], rel=1e-5)
    assert s.electrodes == [(0, 5.0), (1, 5.1), (2, 5.2), (3, 5.3), (4, 5.4)]
    assert any("Vp/In" in n for n in s.notes)


def test_syscal_remote_and_negative_rho() -> None:
    s = _load("syscal_spa_pole_dipole.csv")
    assert s.data[0].b is None and s.data[1].rhoa == -3.1
    assert s.data[0].err == pytest.approx(0.005)


# --- malformed variants: ERTFormatError with the file, the line and what was expected --
def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))  # keeps CR LF line ends
    return p


def _variant(name: str, old: str, new: str) -> str:
    text = (SAMPLES / name).read_bytes().decode("utf-8")
    assert old in text, (name, old)
    return text.replace(old, new, 1)


GENERAL = "r2d_general_resistance_topo.dat"
GENERAL_IP = "r2d_general_ip_errors_topo_list.dat"
UNIFIED = "unified_ui_percent.ohm"
SEMICOLON = "syscal_prosys3_semicolon.csv"
BAD = {
    "general_missing_value": (GENERAL, "\t15.9155\t", "\t", 10, r"expected 10 numbers for data row 1"),
    "general_two_elevations": (GENERAL, "4 0.0 100.0 1.0", "4 0.0 99.0 1.0", 12, r"elevation 99 m here but 100 m on line 10"),
    "general_measurement_type": (GENERAL, "resistance)\t\n1", "resistance)\t\n2", 6, r"measurement type 0 or 1, found 2"),
    "general_electrode_count": (GENERAL, "2\t0.0\t100.0\t1.0", "5\t0.0\t100.0\t1.0", 14, r"expected 2, 3 or 4 electrodes"),
    "ip_block_missing": (GENERAL_IP, "Chargeability\nmV/V\n0.12,1.0\n", "", 10, r"IP quantity .* as text"),
    "error_type": (GENERAL_IP, "data)\n0", "data)\n1", 15, r"error-estimate type 0"),
    "first_electrode_point": (GENERAL_IP, "50.0\n1\n0,0", "50.0\n9\n0,0", 27, r"first electrode \(1\.\.4\)"),
    "topography_count": (GENERAL_IP, "list\n2\n4\n", "list\n2\n40\n", 22, r"number of topography points"),
    "trailing_junk": (GENERAL_IP, "0,0,0,0", "0,0,x", 28, r"number for a trailing flag, found 'x'"),
    "xloc_2_index": ("r2d_wenner_first_electrode.dat", "6\r\n0\r\n0", "6\r\n2\r\n0", 5, r"x-location type 0 \(first electrode\) or 1"),
    "error_column_without_block": ("r2d_wenner_first_electrode.dat", "54.2", "54.2, 3", 7, r"expected 3 numbers"),
    "equatorial": ("r2d_wenner_first_electrode.dat", "2.0\r\n1\r\n", "2.0\r\n8\r\n", 3, r"array type 8 \(equatorial"),
    "reverse_n_not_pole_dipole": ("r2d_dipole_dipole_ip_topo.dat", "1.5 1.0 1 45", "1.5 1.0 -1 45", 10, r"positive n factor"),
    "unified_unit": (UNIFIED, "U/mV", "U/kV", 9, r"unit 'kv' of token 'U/kV'"),
    "unified_err_ohm": ("unified_xyz_topo.dat", "rhoa err", "rhoa err/Ohm", 9, r"err/Ohm needs an r"),
    "unified_3d": ("unified_xyz_topo.dat", "4 0 11.0", "4 3 11.0", 7, r"2-D line"),
    "unified_trailing": ("unified_xyz_topo.dat", "12 12.5\n", "12 12.5\n7 7\n", 17, r"expected end of file"),
    "syscal_rho": (SEMICOLON, "110,25", "1x0", 3, r"number for Rho"),
    "syscal_header": ("syscal_tab_vp_in.txt", "VMN (mV)", "Voltage", 1, r"'Rho'"),
    "syscal_borehole": ("syscal_tab_vp_in.txt", "5.1\t5.4\t5.2", "5.1\t5.4\t5.9", 3, r"one elevation per electrode"),
    "syscal_all_zero_current": ("syscal_tab_vp_in.txt", "\t100\t0.5\nWenner\t1\t4\t2\t3\t5.1\t5.4\t5.2\t5.3\t1750.704\t100", "\t0\t0.5\nWenner\t1\t4\t2\t3\t5.1\t5.4\t5.2\t5.3\t1750.704\t0", 2, r"at least one usable data row: 2 unusable .*lines 2, 3: zero current In"),
    "unified_borehole": ("unified_xyz_topo.dat", "2 0 10.5", "0 0 10.5", 4, r"height 10.5 m here but 10 m on line 3; expected a surface line"),
    "r2d_ip_flag_then_number": ("r2d_general_spectral_ip_flag11.dat", "11\r\nChargeability", "11\r\n7", 9, r"IP flag 0 or 1, found 11"),
    "unified_map_not_a_line": ("unified_map_line.dat", "1006 2008", "1009 2008", 7, r"electrodes on one straight line in x-y\); a 3-D layout"),
    "unified_sensor_unit": ("unified_map_line.dat", "# x y z\n1000", "# x y z/km\n1000", 2, r"found 'z/km'"),
    "unified_no_value_unknown": ("unified_extra_tokens.ohm", "r i Uerr", "rr i Uerr", 8, r"unknown data column token 'rr'"),
    "r2d_negative_a": ("r2d_dipole_dipole_zero_n.dat", "0 1 2 90.0", "0 -1 2 90.0", 9, r"positive electrode spacing a in data row 3"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_variant(tmp_path: Path, case: str) -> None:
    name, old, new, line, pattern = BAD[case]
    path = _write(tmp_path, name, _variant(name, old, new))
    with pytest.raises(ERTFormatError, match=pattern) as info:
        load_survey(path)
    assert info.value.path == path and info.value.line == line, str(info.value)


def test_unknown_format_name_is_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown survey format 'nope'"):
        load_survey(tmp_path / "absent.dat", format="nope")
    assert "res2dinv" in FORMATS


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("langchain_setraf.ert.io", "langchain_setraf.ert.readers", ("load_survey", "FORMATS")),
        (
            "langchain_setraf.ert.legacy",
            "langchain_setraf.ert.compat",
            ("analyze_data_with_mistral", "as_text_generation_pipeline"),
        ),
    ],
)
def test_deprecated_ert_modules_warn_and_reexport(
    old: str, new: str, names: tuple[str, ...]
) -> None:
    """``ert.io`` and ``ert.legacy`` warn on import, name their replacement and 0.5.0."""
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning) as record:
        module = importlib.import_module(old)
    messages = [str(w.message) for w in record if w.category is DeprecationWarning]
    assert any(new in m and "0.5.0" in m for m in messages), messages
    replacement = importlib.import_module(new)
    for name in names:
        assert getattr(module, name) is getattr(replacement, name)


# --- unusable measurement rows: dropped and named in a note, the rest kept -----------
# file -> (dropped lines, reason fragments, ρa kept)
DEGENERATE = {
    "syscal_prosys3_degenerate_rows.csv": (
        [3, 5],
        ["same position", "geometric factor is infinite"],
        [100.0, 110.0, 95.0],
    ),
    "r2d_dipole_dipole_zero_n.dat": ([8], ["n = 0: electrodes coincide"], [100.0, 90.0, 105.0]),
    "r2d_general_coincident_row.dat": ([11], ["same position"], [2 * PI * 0.5, 2 * PI * 0.2]),
    "unified_zero_current.ohm": ([11, 12], ["zero current i", "same position"], [2 * PI, 3 * PI]),
}


@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_unusable_rows_are_dropped_with_a_note(name: str) -> None:
    lines, reasons, rhoa = DEGENERATE[name]
    s = _load(name)
    assert [q.rhoa for q in s.data] == pytest.approx(rhoa)
    note = next(n for n in s.notes if "dropped" in n)
    assert note.startswith(f"{len(lines)} unusable measurement row(s) dropped")
    for line in lines:
        assert f" {line}" in note
    for reason in reasons:
        assert reason in note


def test_dropped_rows_add_no_electrode() -> None:
    # x = 6 m only appears in the dropped row 3
    s = _load("syscal_prosys3_degenerate_rows.csv")
    assert [x for x, _ in s.electrodes] == [0, 1, 2, 3, 4, 5]


def test_one_zero_current_row_is_dropped(tmp_path: Path) -> None:
    name = "syscal_tab_vp_in.txt"
    path = _write(tmp_path, name, _variant(name, "\t100\t0.4", "\t0\t0.4"))
    s = load_survey(path)
    assert [q.rhoa for q in s.data] == pytest.approx([100.0])
    assert any("line 3: zero current In" in n for n in s.notes)


def test_every_row_unusable_is_refused(tmp_path: Path) -> None:
    text = "3\n0 0\n1 0\n2 0\n2\n# a b m n r\n1 2 2 3 1.0\n1 0 1 0 2.0\n"
    path = _write(tmp_path, "all_bad.ohm", text)
    with pytest.raises(ERTFormatError, match="at least one usable data row") as info:
        load_survey(path)
    assert info.value.line == 7


def test_dropped_note_lists_at_most_twenty_lines(tmp_path: Path) -> None:
    rows = "".join("1 2 2 3 1.0\n" for _ in range(25)) + "1 4 2 3 1.0\n"
    text = f"4\n0 0\n1 0\n2 0\n3 0\n26\n# a b m n r\n{rows}"
    s = load_survey(_write(tmp_path, "many.ohm", text))
    assert s.n_data == 1
    note = next(n for n in s.notes if "dropped" in n)
    assert note.startswith("25 unusable") and "lines 8, 9," in note and "and 5 more" in note


def test_syscal_rho_of_the_opposite_sign_is_recomputed() -> None:
    s = _load("syscal_spa_rho_sign.csv")
    # K = 12π for A 0 (B remote) M 2 N 3; Vp/In = 2 Ω and 1.5 Ω; the third row is a
    # genuinely negative reading (Vp < 0), kept as exported
    assert [q.rhoa for q in s.data] == pytest.approx([24 * PI, 18 * PI, -3.77])
    note = next(n for n in s.notes if "opposite" in n)
    assert note.startswith("2 row(s) (first on line 2)") and "K·Vp/In used" in note


def test_res2dinv_ip_flag_other_than_one_before_an_ip_block() -> None:
    s = _load("r2d_general_spectral_ip_flag11.dat")
    # Wenner a = 10 m: K = 20π; R = 2.0 and 1.5 Ω; the first of 3 gates is the IP
    assert [q.rhoa for q in s.data] == pytest.approx([40 * PI, 30 * PI])
    assert [q.ip for q in s.data] == [5.0, 4.0] and s.ip_quantity == "Chargeability"
    assert "IP flag 11 on line 9 read as 1 (IP data present)" in s.notes


def test_unified_descriptive_sensor_line_and_unknown_data_column() -> None:
    # '# x z position for each electrode' and '# a b m n r i Uerr' (pyGIMLi ignores the
    # words that are not tokens it knows)
    s = _load("unified_extra_tokens.ohm")
    assert [q.rhoa for q in s.data] == pytest.approx([4 * PI, 3 * PI])
    assert "columns not used by this reader were ignored: 'Uerr'" in s.notes


def test_unified_map_coordinates_on_a_straight_line() -> None:
    s = _load("unified_map_line.dat")
    assert s.electrodes == [(0, 100.0), (5, 100.5), (10, 101.0), (15, 101.5), (20, 102.0)]
    assert s.topography == [(-5, 99.5), (25, 103.0)]
    assert s.spacing == 5.0 and [q.rhoa for q in s.data] == [50.0, 60.0]
    assert any("straight line 20 m long (largest offset 0 m)" in n for n in s.notes)


def test_unified_map_line_with_gps_scatter(tmp_path: Path) -> None:
    # 5 cm off the line over 20 m is still one straight line
    text = _variant("unified_map_line.dat", "1006 2008", "1006.04 2007.97")
    s = load_survey(_write(tmp_path, "gps.dat", text))
    assert [round(x, 2) for x, _ in s.electrodes] == [0, 5, 10, 15, 20]
    assert any("largest offset 0.0" in n for n in s.notes)


def test_setraf_csv_non_positive_readings_are_dropped() -> None:
    s = _load("setraf_csv_zero_reading.csv")
    assert [(c.x, c.depth, c.rho) for c in s.cells] == [
        (0.0, 0.5, 12.5), (0.0, 1.5, 30.0), (1.0, 0.5, 14.0), (1.0, 1.0, 22.0)
    ]  # fmt: skip
    note = s.notes[0]
    assert note.startswith("2 unusable reading(s) dropped")
    assert "line 2: expected a positive resistivity for ρ_a2, found 0" in note


def test_table_no_data_marker_is_dropped() -> None:
    s = _load("xz_rho_nodata.txt")
    assert [(c.depth, c.rho) for c in s.cells] == [(4.0, 20.5), (6.0, 35.0)]
    assert "line 3: expected a positive resistivity, found -9999" in s.notes[0]


def test_single_unusable_row_gives_its_own_reason(tmp_path: Path) -> None:
    path = _write(tmp_path, "one.txt", "x,depth,rho\n155,5,-9999\n")
    with pytest.raises(ERTFormatError, match=r":2: expected a positive resistivity, found -9999$"):
        load_survey(path)


def test_unified_nan_value_drops_the_row_nan_error_or_ip_is_absent() -> None:
    s = _load("unified_nan_values.dat")
    assert [(q.rhoa, q.err, q.ip) for q in s.data] == [(20.0, None, 1.5), (21.0, 0.02, None)]
    assert "line 10: a value is not a finite number (nan or inf)" in s.notes[-1]


@pytest.mark.parametrize(
    ("name", "old", "new", "kept", "lines"),
    [
        ("r2d_dipole_dipole_zero_n.dat", "0 1 2 90.0", "0 1 2 nan", 2, "line 9:"),
        ("r2d_general_coincident_row.dat", "3.0 0.0 0.2", "3.0 0.0 inf", 1, "line 12:"),
        ("syscal_prosys3_degenerate_rows.csv", ",110.0,", ",NaN,", 2, "line 4:"),
    ],
)
def test_nan_value_drops_the_row(
    tmp_path: Path, name: str, old: str, new: str, kept: int, lines: str
) -> None:
    s = load_survey(_write(tmp_path, name, _variant(name, old, new)))
    assert s.n_data == kept
    assert any(f"{lines} a value is not a finite number" in n for n in s.notes), s.notes


def test_res2dmod_sections_after_the_data_are_named_not_read() -> None:
    s = _load("r2d_res2dmod_extra_sections.dat")
    assert [q.rhoa for q in s.data] == [50.0, 60.0, 70.0]
    assert [q.err for q in s.data] == pytest.approx([0.02, 0.02, 0.02])
    assert s.notes == [
        "lines 18-26 after the data block were not read (a section headed 'Additional "
        "measurements'); only the 3 declared data points are read"
    ]
