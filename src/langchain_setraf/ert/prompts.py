"""French and English prompt texts for the ERT chains.

Their words live in :mod:`~langchain_setraf.ert.i18n`; these names keep their shapes.

Survey-provided text (titles, comments, site notes) is always wrapped as data between
``<survey_data>`` tags, with any such tags inside it removed, and the system prompt says
that text there is data, not instructions.
"""

from __future__ import annotations

import re

from langchain_setraf.ert.i18n import LANGUAGES, TEXTS

__all__ = [
    "CHAT",
    "FORM",
    "GRAPH",
    "GRAPH_LENGTH",
    "GRAPH_NAMES",
    "GRAPH_TYPES",
    "HEADINGS",
    "INTERPRET",
    "LEGEND",
    "STRUCTURED",
    "SYSTEM",
    "as_data",
]

_TAG = re.compile(r"</?\s*survey_data\s*>", re.I)


def as_data(text: str, limit: int = 2000) -> str:
    """Delimit untrusted survey text as data (tags inside it are stripped)."""
    clean = _TAG.sub("", text or "")[:limit]
    return f"<survey_data>\n{clean}\n</survey_data>"


def _per_language(key: str) -> dict[str, str]:
    return {lang: TEXTS[lang][key] for lang in LANGUAGES}


def _prefixed(prefix: str, language: str) -> dict[str, str]:
    table = TEXTS[language]
    return {k.removeprefix(prefix): v for k, v in table.items() if k.startswith(prefix)}


SYSTEM = _per_language("prompt.system")

HEADINGS: dict[str, tuple[str, ...]] = {
    lang: tuple(TEXTS[lang][f"heading.{h}"] for h in ("geology", "actions", "image"))
    for lang in LANGUAGES
}

#: Free-prose request (three headed sections); kept for callers that stream prose.
INTERPRET = _per_language("prompt.interpret")

#: The request of :func:`~langchain_setraf.ert.interpretation_chain`: fill a form whose
#: choices are listed per unit (``{form}``), never write numbers.
STRUCTURED = _per_language("prompt.structured")

#: Lines of the form: one per unit, boundary list and anomaly, then the summary.
FORM: dict[str, dict[str, str]] = {lang: _prefixed("form.", lang) for lang in LANGUAGES}

LEGEND = _per_language("prompt.legend")

#: The graph types SETRAF explains, with their English description (the French one is
#: ``GRAPH_NAMES["fr"]``).
GRAPH_TYPES = _prefixed("graph.", "en")

#: The graph descriptions in each language.
GRAPH_NAMES: dict[str, dict[str, str]] = {lang: _prefixed("graph.", lang) for lang in LANGUAGES}

GRAPH = _per_language("prompt.graph")

GRAPH_LENGTH: dict[str, dict[str, str]] = {
    lang: _prefixed("graph_length.", lang) for lang in LANGUAGES
}

CHAT = _per_language("prompt.chat")
