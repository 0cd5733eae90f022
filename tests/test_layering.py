"""Layers read from an inverted profile (pure Python, no inversion): counts, interfaces,
gradational zones and what a conductor over a resistive basement leaves unresolved."""

from __future__ import annotations

import math

import pytest

from langchain_setraf.ert.layering import fit_layers, layered_model


def _levels(n: int, step: float = 0.5) -> tuple[list[float], list[float]]:
    return [i * step for i in range(n)], [step] * n


def test_a_sharp_step_gives_two_layers_at_the_step() -> None:
    tops, thick = _levels(24)
    values = [math.log10(50.0) if t < 6.0 else math.log10(500.0) for t in tops]
    fit = fit_layers(tops, thick, values)
    assert fit.n_layers == 2
    assert [round(lay.rho) for lay in fit.layers] == [50, 500]
    assert fit.interfaces[0].depth_m == pytest.approx(6.0)
    assert fit.bic.index(min(fit.bic)) == 1


def test_a_gradational_zone_stays_one_boundary_not_a_staircase() -> None:
    """50 Ω·m to 500 Ω·m over 4-9 m, as a smooth inversion draws a layer boundary."""
    tops, thick = _levels(30)

    def value(t: float) -> float:
        ramp = min(max((t - 4.0) / 5.0, 0.0), 1.0)
        return math.log10(50.0) + ramp

    fit = fit_layers(tops, thick, [value(t) for t in tops])
    assert fit.n_layers == 2, fit.layers
    interface = fit.interfaces[0]
    assert 4.0 <= interface.depth_min_m <= interface.depth_m <= interface.depth_max_m <= 9.0
    assert interface.depth_max_m - interface.depth_min_m >= 3.0  # reported as gradational


def test_three_layers_with_noise_are_three() -> None:
    tops, thick = _levels(36)
    jitter = [0.02, -0.015, 0.01, -0.02, 0.015, 0.0]
    values = [
        math.log10(120.0 if t < 3.0 else 15.0 if t < 10.0 else 800.0) + jitter[i % 6]
        for i, t in enumerate(tops)
    ]
    fit = fit_layers(tops, thick, values)
    assert fit.n_layers == 3
    assert [i.depth_m for i in fit.interfaces] == [3.0, 10.0]
    for got, want in zip(fit.layers, (120.0, 15.0, 800.0), strict=True):
        assert abs(got.rho - want) <= 0.1 * want


def test_a_conductor_over_a_resistor_reports_a_lower_bound_and_its_conductance() -> None:
    tops, thick = _levels(30)
    values = [math.log10(120.0 if t < 3.0 else 15.0 if t < 10.0 else 800.0) for t in tops]
    fit = fit_layers(tops, thick, values, doi_m=15.0)
    assert fit.layers[-1].lower_bound and not fit.layers[0].lower_bound
    assert "basement_lower_bound" in fit.unresolved and "below_doi" in fit.unresolved
    assert fit.conductance_s == pytest.approx(7.0 / 15.0, rel=0.01)  # 7 m of 15 Ω·m
    assert fit.layers[-1].bottom_m is None and fit.doi_m == 15.0


def test_a_resistor_over_a_conductor_is_not_a_lower_bound() -> None:
    tops, thick = _levels(20)
    values = [math.log10(800.0 if t < 4.0 else 20.0) for t in tops]
    fit = fit_layers(tops, thick, values)
    assert fit.n_layers == 2 and not any(lay.lower_bound for lay in fit.layers)
    assert fit.conductance_s is None and fit.unresolved == ("below_doi",)


def test_one_level_alone_is_not_a_layer() -> None:
    tops, thick = _levels(12)
    values = [2.0] * 11 + [1.0]  # the last level above the DOI dips: no third layer
    fit = fit_layers(tops, thick, values)
    assert fit.n_layers == 1
    assert fit_layers(tops, thick, values, min_levels=1).n_layers == 2


def test_cells_below_the_doi_are_left_out_and_bad_input_is_named() -> None:
    depth = [0.25, 0.75, 1.25, 1.75, 2.25, 2.75] * 2
    height = [0.5] * 12
    rho = [100.0, 100.0, 100.0, 1000.0, 1000.0, 1.0] * 2  # the 1 Ω·m level is below the DOI
    fit = layered_model(depth, height, rho, doi_m=2.5)
    assert fit.n_layers == 2 and fit.layers[-1].rho == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="fewer than two depth levels"):
        layered_model(depth, height, rho, doi_m=0.4)
    with pytest.raises(ValueError, match="tops must increase"):
        fit_layers([1.0, 0.5], [0.5, 0.5], [1.0, 2.0])
