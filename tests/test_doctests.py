"""The Examples in the docstrings of the pure modules run and show what the code returns.

Modules whose examples load a model or start a server are left to the tests that do so.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "langchain_setraf.settings",
    "langchain_setraf.pull_lock",
    "langchain_setraf.ert.checks",
    "langchain_setraf.ert.classify",
    "langchain_setraf.ert.cli",
    "langchain_setraf.ert.fluency",
    "langchain_setraf.ert.form",
    "langchain_setraf.ert.geometry",
    "langchain_setraf.ert.grounding",
    "langchain_setraf.ert.i18n",
    "langchain_setraf.ert.model_section",
    "langchain_setraf.ert.notes",
    "langchain_setraf.ert.parsing",
    "langchain_setraf.ert.readers",
    "langchain_setraf.ert.readers._straight_line",
    "langchain_setraf.ert.rendering",
    "langchain_setraf.ert.report",
    "langchain_setraf.ert.report_pdf",
    "langchain_setraf.backends.transformers.kv_estimate",
    "langchain_setraf.ert.summary",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no example left to check: drop it from MODULES"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} fail (see above)"
