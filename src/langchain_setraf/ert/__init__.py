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
from langchain_setraf.ert.figures import section_figure
from langchain_setraf.ert.fluency import check_fluency, sentence_language, speaks_of_ground
from langchain_setraf.ert.grounding import check_numbers
from langchain_setraf.ert.invert import InversionUnavailableError, invert_survey
from langchain_setraf.ert.layering import LayeredModel
from langchain_setraf.ert.model_section import InversionOptions, InversionProgress, ModelSection
from langchain_setraf.ert.notes import (
    NotePassage,
    NotesError,
    NotesIndex,
    notes_embeddings,
    notes_for_survey,
    read_notes,
    retrieve_for_summary,
    split_notes,
    unit_queries,
)
from langchain_setraf.ert.readers import FORMATS, load_survey
from langchain_setraf.ert.report import Versions, collect_versions, html_report, write_report
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
    "NotePassage",
    "NotesError",
    "NotesIndex",
    "Quadrupole",
    "Survey",
    "SurveySummary",
    "UnitReport",
    "Versions",
    "candidate_materials",
    "check_fluency",
    "check_numbers",
    "collect_versions",
    "ert_chat_chain",
    "graph_explanation_chain",
    "html_report",
    "interpretation_chain",
    "invert_survey",
    "legend_chain",
    "load_survey",
    "notes_embeddings",
    "notes_for_survey",
    "read_notes",
    "retrieve_for_summary",
    "section_figure",
    "sentence_language",
    "setraf_class",
    "setraf_water_class",
    "speaks_of_ground",
    "split_notes",
    "summarize",
    "unit_queries",
    "write_report",
]
