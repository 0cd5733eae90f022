"""Compatibility shim: the readers live in :mod:`langchain_setraf.ert.readers`.

Example:
    >>> from langchain_setraf.ert.io import load_survey
    >>> load_survey("examples/two_layer_wenner.dat").format
    'res2dinv'
"""

from __future__ import annotations

from langchain_setraf.ert.readers import FORMATS, load_survey, sniff_format

__all__ = ["FORMATS", "load_survey", "sniff_format"]
