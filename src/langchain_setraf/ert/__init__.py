"""ERT interpretation toolkit: real survey readers, grounded summaries, drop-in chains.

Example:
    >>> from langchain_setraf.ert import load_survey, summarize
    >>> summary = summarize(load_survey("examples/two_layer_wenner.dat"))
    >>> summary.survey.array
    'wenner-alpha'
"""

from langchain_setraf.ert.chains import (
    Interpretation,
    LegendResult,
    UnitReport,
    ert_chat_chain,
    graph_explanation_chain,
    interpretation_chain,
    legend_chain,
)
from langchain_setraf.ert.classify import candidate_materials, setraf_class, setraf_water_class
from langchain_setraf.ert.grounding import check_numbers
from langchain_setraf.ert.invert import InversionUnavailableError, invert_survey
from langchain_setraf.ert.layering import LayeredModel
from langchain_setraf.ert.model_section import InversionOptions, InversionProgress, ModelSection
from langchain_setraf.ert.readers import FORMATS, load_survey
from langchain_setraf.ert.summary import SurveySummary, summarize
from langchain_setraf.ert.survey import Cell, ERTFormatError, Quadrupole, Survey

__all__ = [
    "FORMATS",
    "Cell",
    "ERTFormatError",
    "Interpretation",
    "InversionOptions",
    "InversionProgress",
    "InversionUnavailableError",
    "LayeredModel",
    "LegendResult",
    "ModelSection",
    "Quadrupole",
    "Survey",
    "SurveySummary",
    "UnitReport",
    "candidate_materials",
    "check_numbers",
    "ert_chat_chain",
    "graph_explanation_chain",
    "interpretation_chain",
    "invert_survey",
    "legend_chain",
    "load_survey",
    "setraf_class",
    "setraf_water_class",
    "summarize",
]
