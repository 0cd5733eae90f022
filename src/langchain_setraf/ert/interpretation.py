"""The structure a model fills for one survey, and the French/English prose built from it.

The public entry point of the interpretation's parts, each in a module of its own:
:mod:`~langchain_setraf.ert.form` (the per-survey form: :func:`spec_of`,
:func:`schema_model`, :func:`json_schema`), :mod:`~langchain_setraf.ert.parsing` (reading
an answer: :func:`parse_answer`, :func:`coerce_choices`), :mod:`~langchain_setraf.ert.checks`
(the model's free text: :func:`useful_text`), :mod:`~langchain_setraf.ert.rendering` (the
prose: :func:`render`) and :mod:`~langchain_setraf.ert.i18n` (every French and English
string). Every depth and resistivity of the prose comes from the
:class:`~langchain_setraf.ert.SurveySummary`, never from the model.

Example:
    >>> from langchain_setraf.ert import load_survey, summarize
    >>> s = summarize(load_survey("examples/two_layer_wenner.dat"))
    >>> spec = spec_of(s)
    >>> [u.name for u in spec.units]
    ['U1', 'U2', 'U3']
    >>> choices, warnings = coerce_choices(spec, {})  # nothing given: the trivial answer
    >>> choices.units[0].material == spec.units[0].candidates[0]
    True
"""

from __future__ import annotations

from langchain_setraf.ert.checks import detect_language, useful_text
from langchain_setraf.ert.form import (
    ANOMALY_CAUSES,
    CONFIDENCE,
    UNKNOWN_MATERIAL,
    AnomalySpec,
    InterpretationSpec,
    UnitSpec,
    json_schema,
    material_class,
    schema_model,
    spec_of,
    token_budget,
)
from langchain_setraf.ert.i18n import confidence_name, material_name
from langchain_setraf.ert.parsing import (
    AnomalyChoice,
    Choices,
    UnitChoice,
    coerce_choices,
    filled_fraction,
    parse_answer,
)
from langchain_setraf.ert.rendering import Rendered, fmt, render

__all__ = [
    "ANOMALY_CAUSES",
    "CONFIDENCE",
    "UNKNOWN_MATERIAL",
    "AnomalyChoice",
    "AnomalySpec",
    "Choices",
    "InterpretationSpec",
    "Rendered",
    "UnitChoice",
    "UnitSpec",
    "coerce_choices",
    "confidence_name",
    "detect_language",
    "filled_fraction",
    "fmt",
    "json_schema",
    "material_class",
    "material_name",
    "parse_answer",
    "render",
    "schema_model",
    "spec_of",
    "token_budget",
    "useful_text",
]
