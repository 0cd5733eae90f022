"""Grounded summary, classification and the number check, on real files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from langchain_setraf.ert import candidate_materials, check_numbers, load_survey, summarize
from langchain_setraf.ert.grounding import extract_numbers
from langchain_setraf.ert.summary import LogStats

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two_layer_wenner.dat"


def test_log_statistics_never_linear() -> None:
    st = LogStats.of([1.0, 10.0, 100.0])
    assert st.median == 10.0  # the linear mean would be 37
    assert st.min == 1.0 and st.max == 100.0


def test_direct_push_log_finds_clay_top_and_bedrock(ert_dir: Path) -> None:
    """Ground truth (SOURCES.md): clayey cover, then bedrock of a few hundred Ω·m from ~33 m."""
    s = summarize(load_survey(ert_dir / "gimli_bedrock_directpush.txt"))
    top, bottom = s.units[0], s.units[-1]
    assert "clay" in [c.material for c in top.candidates]
    assert top.stats.median < 20
    assert 25 <= bottom.top <= 45 and bottom.stats.median > 185
    assert s.boundaries and s.boundaries[-1].factor > 5
    assert s.anomalies == []  # a single vertical log has no lateral anomalies


def test_sensitivity_masks_deep_blocks(ert_dir: Path) -> None:
    s = summarize(load_survey(ert_dir / "geoelectrics_p3_dipoledipole_model.xyz"))
    assert 0.2 < s.masked_fraction < 0.4
    assert s.doi_depth is not None and 7 <= s.doi_depth <= 8.5
    assert all(u.bottom <= s.doi_depth for u in s.units)
    # the 14 890 Ω·m deep blocks are not in any unit
    assert max(u.stats.max for u in s.units) < 14_000
    assert "sensitivity" in s.doi_rule


def test_pseudo_depth_is_labelled(ert_dir: Path) -> None:
    s = summarize(load_survey(ert_dir / "resipy_res2dinv_dd.dat"))
    assert "pseudo-depth" in s.depth_label and "not a true depth" in s.depth_label
    assert any("pseudo-depths" in c for c in s.caveats)
    assert "Edwards" in s.to_text()


def test_example_units_increase_with_depth() -> None:
    s = summarize(load_survey(EXAMPLE))
    meds = [u.stats.median for u in s.units]
    assert meds == sorted(meds) and meds[0] < 60 < meds[-1]
    assert s.boundaries and all(b.factor > 1 for b in s.boundaries)


def test_candidates_overlap_and_give_alternatives() -> None:
    low = [c.material for c in candidate_materials(2, 8)]
    assert "clay" in low and any("water" in m or "brackish" in m for m in low)
    high = [c.material for c in candidate_materials(2000, 9000)]
    assert "clay" not in high and len(high) >= 3
    with pytest.raises(ValueError):
        candidate_materials(0, 10)


def test_number_extraction_handles_formats() -> None:
    rhos, depths = extract_numbers("Clay 20–60 Ω·m above 1,5 m; rock 1 000 ohm-m at 12.5 m.")
    assert rhos == [20, 60, 1000]
    assert depths == [1.5, 12.5]


def test_grounding_flags_unsupported_numbers(ert_dir: Path) -> None:
    s = summarize(load_survey(ert_dir / "geoelectrics_p3_dipoledipole_model.xyz"))
    ok = f"A conductive layer of {s.units[0].stats.median:g} Ω·m down to {s.units[0].bottom:g} m."
    assert check_numbers(ok, s) == []
    bad = check_numbers("Bedrock of 90000 ohm·m at 40 m, and a cavity at 11 m.", s)
    assert any("90000" in w for w in bad)
    assert any("40 m" in w and "deeper" in w for w in bad)
    assert any("11 m" in w and "depth of investigation" in w for w in bad)


def test_prompt_text_has_units_and_candidates(ert_dir: Path) -> None:
    text = summarize(load_survey(ert_dir / "gimli_bedrock.dat")).to_text()
    assert "ohm·m" in text and "candidates:" in text and "U1" in text
    assert not any(math.isnan(float(x)) for x in [1.0])


def test_caveats_follow_the_language(ert_dir: Path) -> None:
    survey = load_survey(ert_dir / "geoelectrics_p3_dipoledipole_model.xyz")
    fr = summarize(survey, language="fr").caveats
    en = summarize(survey, language="en").caveats
    assert any("profondeur d'investigation" in c for c in fr)
    assert any("depth of investigation" in c for c in en)
    assert any("3.4 % RMS" in c for c in fr) and len(fr) == len(en)
