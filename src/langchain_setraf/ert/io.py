"""Deprecated: the readers live in :mod:`langchain_setraf.ert.readers`.

Importing this module warns ``DeprecationWarning``; it is removed in 0.5.0. Import
``load_survey``, ``sniff_format`` and ``FORMATS`` from ``langchain_setraf.ert.readers`` (or
``load_survey`` from ``langchain_setraf.ert``).
"""

from __future__ import annotations

import warnings

from langchain_setraf.ert.readers import FORMATS, load_survey, sniff_format

__all__ = ["FORMATS", "load_survey", "sniff_format"]

warnings.warn(
    "langchain_setraf.ert.io is deprecated and will be removed in 0.5.0; "
    "import from langchain_setraf.ert.readers instead",
    DeprecationWarning,
    stacklevel=2,
)
