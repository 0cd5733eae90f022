"""Inversion (SimPEG 2.5-D): options, the missing extra, the summary path, and truth tests.

The truth tests invert the bundled two-layer Wenner line and the synthetic cases of
``examples/synthetic`` (committed data, truth and tolerances in ``*.truth.json`` beside
each) and compare the recovered section with the truth, inside the depth of investigation.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from langchain_setraf.ert import load_survey, summarize
from langchain_setraf.ert.cli import add_inversion_arguments, inversion_options
from langchain_setraf.ert.model_section import InversionOptions, ModelSection

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "examples" / "synthetic"
TWO_LAYER = ROOT / "examples" / "two_layer_wenner.dat"


# -- helpers ---------------------------------------------------------------------------------
def _fake_section(doi: float = 6.0) -> ModelSection:
    """A small two-layer section (no inversion), for the summary path."""
    xs = [float(x) for x in range(0, 20, 2)]
    depths = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
    cells = [(x, d) for d in depths for x in xs]
    rho = [50.0 if d < 3 else 500.0 for _, d in cells]
    cov = [math.exp(-d) for _, d in cells]
    n = len(cells)
    return ModelSection(
        x=tuple(x for x, _ in cells),
        depth=tuple(d for _, d in cells),
        width=(2.0,) * n,
        height=(1.0,) * n,
        rho=tuple(rho),
        coverage=tuple(cov),
        doi_m=doi,
        chi2=1.1,
        rms_percent=2.5,
        iterations=4,
        stopped_by="target",
        rhoa_observed=(60.0, 70.0),
        rhoa_predicted=(61.0, 69.0),
        library="simpeg 0.25.2",
    )


def _profile(section: ModelSection, x_from: float, x_to: float) -> list[tuple[float, float]]:
    """(depth, median log10 ρ) of the levels of the columns with x in [x_from, x_to]."""
    levels: dict[float, list[float]] = {}
    for x, d, r in zip(section.x, section.depth, section.rho, strict=True):
        if x_from <= x <= x_to:
            levels.setdefault(d, []).append(math.log10(r))
    return sorted((d, statistics.median(v)) for d, v in levels.items())


def _steepest(
    profile: list[tuple[float, float]], sign: int, below: float = 0.0, above: float = math.inf
) -> float:
    """Depth of the steepest change of log10 ρ (``sign`` +1 increase, -1 decrease) between
    ``below`` and ``above``: where a smooth model puts a boundary."""
    best: tuple[float, float] | None = None
    for (d0, v0), (d1, v1) in zip(profile, profile[1:], strict=False):
        if d0 < below or d1 > above:
            continue
        grad = sign * (v1 - v0) / (d1 - d0)
        if best is None or grad > best[0]:
            best = (grad, (d0 + d1) / 2)
    assert best is not None and best[0] > 0, f"no {'in' if sign > 0 else 'de'}crease found"
    return best[1]


def _value_at(profile: list[tuple[float, float]], depth: float) -> float:
    """ρ of the profile level nearest to ``depth``."""
    return float(10 ** min(profile, key=lambda p: abs(p[0] - depth))[1])


def _within(value: float, truth: float, rel: float) -> bool:
    return abs(value - truth) <= rel * abs(truth)


@cache
def _inverted(path: str, options: InversionOptions | None = None) -> ModelSection:
    from langchain_setraf.ert.invert import invert_survey

    return invert_survey(load_survey(path), options=options)


def _truth(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SYNTHETIC / f"{name}.truth.json").read_text("utf-8"))
    return data


# -- options, CLI and the missing extra -------------------------------------------------------
def test_options_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="error_floor"):
        InversionOptions(error_floor=0)
    with pytest.raises(ValueError, match="max_iterations"):
        InversionOptions(max_iterations=0)
    with pytest.raises(ValueError, match="cell_size"):
        InversionOptions(cell_size=-1.0)
    with pytest.raises(ValueError, match="doi_coverage"):
        InversionOptions(doi_coverage=2.0)


def test_cli_maps_inversion_flags_to_options() -> None:
    parser = argparse.ArgumentParser()
    add_inversion_arguments(parser)
    args = parser.parse_args(
        ["--invert", "--error-percent", "5", "--cell-size", "0.5", "--max-iterations", "3"]
    )
    assert args.invert
    opts = inversion_options(args)
    assert (opts.error_percent, opts.cell_size, opts.max_iterations) == (5.0, 0.5, 3)
    assert opts.alpha_z == InversionOptions().alpha_z
    assert not parser.parse_args([]).invert
    assert opts.regularization == "smooth" and opts.refine_layers
    assert not inversion_options(parser.parse_args(["--invert", "--no-layer-fit"])).refine_layers
    blocky = inversion_options(parser.parse_args(["--invert", "--regularization", "blocky"]))
    assert blocky.regularization == "blocky"
    with pytest.raises(SystemExit):
        parser.parse_args(["--regularization", "sharp"])
    with pytest.raises(ValueError, match="regularization must be one of smooth, blocky"):
        InversionOptions(regularization="sharp")


def test_progress_bar_line() -> None:
    from langchain_setraf.ert.cli import progress_bar
    from langchain_setraf.ert.model_section import InversionProgress

    line = progress_bar(InversionProgress(3, 12, 2.5, 10.0, 9.0, 2.0, "blocky"), width=12)
    assert line.startswith("[###.........] iteration 3/12 (blocky): χ² 2.50")


def test_missing_simpeg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_setraf.ert.invert import InversionUnavailableError, invert_survey

    monkeypatch.setitem(sys.modules, "discretize", None)  # import discretize -> ImportError
    with pytest.raises(InversionUnavailableError, match=r"langchain-setraf\[invert\]"):
        invert_survey(load_survey(TWO_LAYER))


def test_a_model_file_cannot_be_inverted() -> None:
    from langchain_setraf.ert.invert import invert_survey

    survey = load_survey(TWO_LAYER)
    survey.data = []
    with pytest.raises(ValueError, match="no apparent-resistivity data"):
        invert_survey(survey)


def test_a_too_fine_mesh_is_refused() -> None:
    from langchain_setraf.ert.invert import invert_survey

    with pytest.raises(ValueError, match="choose a larger cell_size"):
        invert_survey(load_survey(TWO_LAYER), options=InversionOptions(cell_size=0.01))


@pytest.mark.slow
def test_a_line_with_topography_is_inverted_on_a_surface_following_mesh() -> None:
    """pyGIMLi's slag dump (222 data, 12.8 m of relief): two iterations, cells below the
    ground surface only, depths measured from it, and the solver named."""
    from langchain_setraf.ert.invert import invert_survey

    survey = load_survey(ROOT / "tests" / "data" / "ert" / "gimli_slagdump.ohm")
    heights = [z for _, z in survey.electrodes]
    assert max(heights) - min(heights) > 10  # the file does have topography
    options = InversionOptions(max_iterations=2, refine_layers=False)  # the mesh is tested
    section = invert_survey(survey, options=options)
    assert section.layering is None and section.refine_s == 0
    assert section.iterations >= 1 and math.isfinite(section.chi2)
    assert section.history[-1].chi2 < section.history[0].chi2 or section.iterations == 1
    assert len(section.elevation) == section.n_cells
    assert min(section.depth) > 0
    pts = sorted(survey.electrodes)

    def surface(x: float) -> float:  # the line between electrodes, as the mesh uses it
        for (x0, z0), (x1, z1) in zip(pts, pts[1:], strict=False):
            if x0 <= x <= x1:
                return z0 + (z1 - z0) * (x - x0) / (x1 - x0)
        raise AssertionError(f"cell at x = {x} is outside the spread")

    for x, d, z in zip(section.x, section.depth, section.elevation, strict=True):
        assert d == pytest.approx(surface(x) - z, abs=1e-6)  # depth below the local surface
    top_cells = sorted(zip(section.x, section.elevation, section.depth, strict=True))
    assert max(e for _, e, _ in top_cells) - min(e for _, e, _ in top_cells) > 10
    assert section.solver in ("pardiso", "mumps", "superlu")
    if section.solver == "superlu":
        assert "Pardiso" in section.solver_note


# -- the summary of an inverted section --------------------------------------------------------
def test_summary_of_a_model_uses_true_depths_and_its_doi() -> None:
    survey = load_survey(TWO_LAYER)
    section = _fake_section(doi=6.0)
    summary = summarize(survey, language="en", model=section)
    assert summary.survey.depth_kind == "model"
    assert summary.doi_depth == 6.0
    assert summary.inversion is section
    assert max(u.bottom for u in summary.units) <= 6.0  # deeper cells are masked
    assert summary.masked_fraction > 0
    text = " ".join(summary.caveats)
    assert "pseudo-depth" not in text and "invert the data" not in text.lower()
    assert "chi² 1.10" in text and "RMS 2.50 %" in text
    facts = summary.facts()
    assert facts["chi2"] == 1.1 and "simpeg" in str(facts["inversion"])
    assert "chi² 1.10" in summary.to_text()
    assert [b.rho_below > b.rho_above for b in summary.boundaries] == [True]


@pytest.mark.parametrize("regularization", ["smooth", "blocky"])
def test_the_summary_names_the_method_run_with_decimal_commas_in_french(
    regularization: str,
) -> None:
    """The caveat, the prompt text and the method line name the regularisation that ran,
    and French figures (χ², RMS, the DOI rule's coverage) have a decimal comma."""
    import dataclasses

    section = dataclasses.replace(_fake_section(doi=6.0), regularization=regularization, chi2=0.904)
    fr = summarize(load_survey(TWO_LAYER), language="fr", model=section)
    en = summarize(load_survey(TWO_LAYER), language="en", model=section)
    fr_words = {"smooth": "lissée", "blocky": "par blocs (IRLS)"}[regularization]
    en_words = {"smooth": "smooth", "blocky": "blocky (IRLS)"}[regularization]
    other_fr = {"smooth": "par blocs", "blocky": "lissé"}[regularization]
    other_en = {"smooth": "blocky", "blocky": "smooth"}[regularization]
    fr_text = " ".join([*fr.caveats, fr.to_text(), section.describe("fr")])
    en_text = " ".join([*en.caveats, en.to_text(), section.describe("en")])
    assert f"inversion 2,5-D {fr_words} (simpeg 0.25.2, chi² 0,90, RMS 2,50 %" in fr_text
    assert f"Inversé ici (simpeg 0.25.2, 2,5-D {fr_words}) : chi² 0,90, RMS 2,50 %" in fr_text
    assert f"inversion {fr_words} 2,5-D par simpeg 0.25.2 : χ² 0,90, RMS 2,50 %" in fr_text
    assert f"a {en_words} 2.5-D inversion (simpeg 0.25.2, chi² 0.90, RMS 2.50 %" in en_text
    assert f"Inverted here (simpeg 0.25.2, 2.5-D {en_words}): chi² 0.90" in en_text
    assert other_fr not in fr_text and other_en not in en_text
    assert "0.90" not in fr_text and "2.50" not in fr_text
    coverage = section.options.doi_coverage
    assert 0 < coverage < 1 and fr.doi_rule.count(f"{coverage:g}".replace(".", ",")) == 1
    assert f"{coverage:g}" in en.doi_rule and f"{coverage:g}" not in fr.doi_rule
    assert en.doi_text("fr") == fr.doi_rule and fr.doi_text("en") == en.doi_rule


def test_summary_without_a_model_is_unchanged() -> None:
    summary = summarize(load_survey(TWO_LAYER), language="fr")
    assert summary.inversion is None
    assert summary.facts()["chi2"] is None
    assert any("pseudo-profondeurs" in c for c in summary.caveats)


# -- truth tests ------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_layer_wenner_comes_back() -> None:
    """50 Ω·m over 500 Ω·m, interface at 6 m: depth ±20 %, both ρ ±25 %, inside the DOI.

    The file holds exact analytical values (3 decimals), so the error model is 1 % + 0.1 Ω·m
    instead of the default 3 % + 0.5 Ω·m meant for field data. Blocky: a smooth model puts
    its steepest gradient at the geometric mean of the two resistivities (~7.3 m here).
    """
    options = InversionOptions(
        error_percent=1.0, error_floor=0.1, regularization="blocky", max_iterations=15
    )
    section = _inverted(str(TWO_LAYER), options)
    assert section.chi2 < 1.5
    prof = [p for p in _profile(section, 10.0, 52.0) if p[0] < section.doi_m]
    interface = _steepest(prof, +1)
    assert _within(interface, 6.0, 0.20), interface
    assert section.doi_m > interface
    assert _within(_value_at(prof, 1.5), 50.0, 0.25)
    deepest = prof[-1]
    assert deepest[0] > interface
    assert _within(10 ** deepest[1], 500.0, 0.25), (deepest, section.doi_m)
    assert section.regularization == "blocky" and section.iterations == len(section.history)
    assert any(h.phase == "blocky" for h in section.history)
    layered = section.layers()  # the units: two, the interface within ±20 %
    assert layered.n_layers == 2, layered.layers
    assert _within(layered.interfaces[0].depth_m, 6.0, 0.20), layered.interfaces
    assert _within(layered.layers[0].rho, 50.0, 0.25), layered.layers
    assert layered.layers[1].lower_bound and layered.layers[1].rho >= 0.75 * 500.0
    summary = summarize(load_survey(TWO_LAYER), model=section)
    assert summary.doi_depth == pytest.approx(section.doi_m, rel=0.01)
    assert summary.units[0].stats.median < 100 < summary.units[-1].stats.median


@pytest.mark.slow
def test_three_layer_earth() -> None:
    truth = _truth("three_layer")
    tol = truth["tolerances"]
    section = _inverted(str(SYNTHETIC / "three_layer.dat"))
    prof = [p for p in _profile(section, 8.0, 38.0) if p[0] < section.doi_m]
    top, middle, bottom = truth["layers"]
    lowest = min(prof, key=lambda p: p[1])
    first = _steepest(prof, -1, above=lowest[0])
    second = _steepest(prof, +1, below=lowest[0])
    assert _within(first, top["bottom"], tol["first_interface_rel"]), first
    assert _within(second, middle["bottom"], tol["second_interface_rel"]), second
    assert _within(_value_at(prof, 0.5), top["rho"], tol["rho_top_rel"])
    assert 10 ** lowest[1] < tol["rho_middle_max"], lowest
    assert _within(10 ** prof[-1][1], bottom["rho"], tol["rho_bottom_rel"]), prof[-1]


def _block_check(name: str) -> None:
    truth = _truth(name)
    tol = truth["tolerances"]
    block, background = truth["block"], truth["background"]
    section = _inverted(str(SYNTHETIC / f"{name}.dat"))
    cells = [
        (x, d, r)
        for x, d, r in zip(section.x, section.depth, section.rho, strict=True)
        if d < section.doi_m
    ]
    conductive = block["rho"] < background
    x, d, r = (min if conductive else max)(cells, key=lambda c: c[2])
    centre_x = (block["x_from"] + block["x_to"]) / 2
    centre_d = (block["depth_from"] + block["depth_to"]) / 2
    assert abs(x - centre_x) <= tol["x_m"], (x, centre_x)
    assert abs(d - centre_d) <= tol["depth_m"], (d, centre_d)
    contrast = r / background
    assert (contrast < 1 / tol["min_contrast"]) if conductive else (contrast > tol["min_contrast"])
    median = 10 ** statistics.median(math.log10(c[2]) for c in cells)
    assert _within(median, background, tol["background_rel"]), median


@pytest.mark.slow
def test_conductive_block() -> None:
    _block_check("conductive_block")


@pytest.mark.slow
def test_resistive_block() -> None:
    _block_check("resistive_block")


@pytest.mark.slow
def test_dipping_interface() -> None:
    truth = _truth("dipping_interface")
    tol = truth["tolerances"]
    # blocky: a smooth model puts the steepest change at the geometric mean of 30 and
    # 300 Ω·m, below the interface where it is deep (1.8 m at x = 30 m)
    options = InversionOptions(regularization="blocky", max_iterations=15)
    section = _inverted(str(SYNTHETIC / "dipping_interface.dat"), options)
    depths = []
    for x in tol["columns_x"]:
        prof = [p for p in _profile(section, x - 2.0, x + 2.0) if p[0] < section.doi_m]
        found = _steepest(prof, +1)
        want = truth["interface"]["depth_at_x0"] + truth["interface"]["slope"] * x
        assert abs(found - want) <= tol["interface_m"], (x, found, want)
        depths.append(found)
    assert depths == sorted(depths)  # it dips the right way
    assert depths[-1] - depths[0] >= tol["min_dip_m"], depths


# -- the layered fit of the data ----------------------------------------------------------------
def _cell_tops(section: ModelSection) -> set[float]:
    return {round(d - h / 2, 6) for d, h in zip(section.depth, section.height, strict=True)}


@pytest.mark.slow
def test_the_layered_fit_of_the_data_places_interfaces_inside_cells() -> None:
    """Three layers (200/30/500 Ω·m, interfaces 2 and 5 m): the section's own layered
    reading snaps interfaces to cell tops; the fit of the data puts them within ±20 %,
    between cell tops, with a standard deviation and the data's χ²."""
    truth = _truth("three_layer")["layers"]
    section = _inverted(str(SYNTHETIC / "three_layer.dat"))  # shared with test_three_layer_earth
    fit = section.layering
    assert fit is not None and fit.source == "data" and fit.geometry == "flat", fit
    assert fit.chi2 is not None and fit.chi2 <= 2 * max(section.chi2, 1.0)
    assert section.units_model() is fit
    image = section.layers()
    assert all(round(i.depth_m, 6) in _cell_tops(section) for i in image.interfaces)
    assert fit.n_layers == len(truth) == image.n_layers
    for got, want in zip(fit.interfaces, truth, strict=False):
        assert _within(got.depth_m, want["bottom"], 0.20), (got, want)
        assert round(got.depth_m, 6) not in _cell_tops(section)
        assert got.depth_sd_m is not None and 0 < got.depth_sd_m < 0.2 * want["bottom"]
        assert got.depth_min_m < got.depth_m < got.depth_max_m
    for got, want in zip(fit.layers[:-1], truth, strict=False):
        assert _within(got.rho, want["rho"], 0.25), (got, want)
        assert got.rho_sd_log is not None and got.rho_sd_log > 0
    basement = fit.layers[-1]  # under the conductor: a lower bound that holds
    assert basement.lower_bound and basement.rho <= 1.25 * truth[-1]["rho"]
    true_s = (truth[1]["bottom"] - truth[1]["top"]) / truth[1]["rho"]
    assert fit.conductance_s is not None and _within(fit.conductance_s, true_s, 0.25)
    assert fit.conductance_sd_s is not None and fit.conductance_sd_s > 0
    summary = summarize(load_survey(SYNTHETIC / "three_layer.dat"), model=section)
    assert [u.top for u in summary.units][1:] == [
        pytest.approx(i.depth_m, rel=0.01) for i in fit.interfaces
    ]
    assert any("fitted to the measured data" in c for c in summary.caveats)
    french = summarize(load_survey(SYNTHETIC / "three_layer.dat"), model=section, language="fr")
    assert any("ajusté aux données mesurées" in c for c in french.caveats)


@pytest.mark.slow
def test_the_layered_fit_of_the_data_finds_a_dipping_interface() -> None:
    truth = _truth("dipping_interface")
    options = InversionOptions(regularization="blocky", max_iterations=15)
    section = _inverted(str(SYNTHETIC / "dipping_interface.dat"), options)  # shared
    fit = section.layering
    assert fit is not None and fit.source == "data" and fit.geometry == "dipping", fit
    (interface,) = fit.interfaces
    assert interface.slope_sd is not None and interface.slope_sd > 0
    assert _within(interface.slope, truth["interface"]["slope"], 0.20), interface
    for x in truth["tolerances"]["columns_x"]:
        want = truth["interface"]["depth_at_x0"] + truth["interface"]["slope"] * x
        assert _within(interface.depth_at(x), want, 0.20), (x, interface.depth_at(x), want)


@pytest.mark.slow
def test_a_block_is_not_forced_into_layers() -> None:
    """A conductive block: no layered model fits the data; the units come from the section,
    and the summary says why, in the report's language."""
    section = _inverted(str(SYNTHETIC / "conductive_block.dat"))  # shared
    fit = section.layering
    assert fit is not None and fit.source == "image" and fit.fallback == "misfit"
    assert fit.rejected_chi2 is not None and fit.rejected_chi2 > 2 * max(section.chi2, 1.0)
    assert fit.layers == section.layers().layers
    summary = summarize(load_survey(SYNTHETIC / "conductive_block.dat"), model=section)
    assert any("was rejected" in c for c in summary.caveats)
    french = summarize(
        load_survey(SYNTHETIC / "conductive_block.dat"), model=section, language="fr"
    )
    assert any("a été écarté" in c for c in french.caveats)


def test_a_rejected_layered_fit_warns_and_keeps_the_image() -> None:
    """The fall-back alone, on a linear forward (a stand-in for the 2.5-D one): data that
    change along the line cannot be fitted by flat or dipping layers."""
    import numpy as np

    from langchain_setraf.ert.layer_refine import LayerCells, RefinementWarning, refine_layers
    from langchain_setraf.ert.layering import layered_model

    xs, ds = np.meshgrid(np.arange(0.5, 20), np.arange(0.25, 6, 0.5), indexing="ij")
    x, depth = xs.ravel(), ds.ravel()
    height = np.full(x.size, 0.5)
    rng = np.random.default_rng(0)
    kernel = rng.random((60, x.size)) * np.exp(-depth / 2)  # data × cells

    def response(log_sigma: np.ndarray, *, jacobian: bool = True) -> tuple[Any, Any]:
        return kernel @ log_sigma, kernel if jacobian else None

    truth = np.where(x < 10, np.log(1 / 10), np.log(1 / 1000))  # a vertical contact
    dobs = kernel @ truth
    start = layered_model(depth.tolist(), height.tolist(), np.exp(-truth).tolist(), 6.0)
    cells = LayerCells(x, depth, height, x_ref=10.0, x_min=0.0, x_max=20.0, max_depth=6.0)
    with pytest.warns(RefinementWarning, match="not layered enough"):
        fit = refine_layers(
            response, cells, dobs, np.full(60, 0.01), start, image_chi2=0.8, min_thickness=0.1
        )
    assert fit.source == "image" and fit.fallback == "misfit" and fit.layers == start.layers
    assert fit.rejected_chi2 is not None and fit.rejected_chi2 > 1.6


def test_surface_distances_become_horizontal_for_the_mesh() -> None:
    """ResIPy's Res2DInv line gives x along the ground (topography flag 2, 61 m of relief):
    the mesh's electrodes are 3 m apart along the slope, not 3 m apart horizontally."""
    from langchain_setraf.ert.invert import horizontal_electrodes

    survey = load_survey(ROOT / "tests" / "data" / "ert" / "resipy_res2dinv_dd.dat")
    assert any(getattr(n, "key", "") == "reader.surface_x" for n in survey.notes)
    flat = horizontal_electrodes(survey)
    assert [z for _, z in flat] == [z for _, z in survey.electrodes]
    steps = [math.dist(p, q) for p, q in zip(sorted(flat), sorted(flat)[1:], strict=False)]
    assert steps == pytest.approx([3.0] * len(steps), rel=1e-6)  # the cable's spacing
    assert flat[-1][0] - flat[0][0] < 0.95 * (survey.electrodes[-1][0] - survey.electrodes[0][0])
    level = load_survey(TWO_LAYER)  # no relief, no surface distances: unchanged
    assert horizontal_electrodes(level) == level.electrodes
    # the mesh's core cells follow the (now irregular) electrodes: each sits on a node
    import dataclasses

    import discretize

    from langchain_setraf.ert.invert import build_mesh

    grid = build_mesh(dataclasses.replace(survey, electrodes=flat), InversionOptions(), discretize)
    assert [x for x, _ in grid.electrodes] == pytest.approx([x for x, _ in flat], abs=1e-9)
