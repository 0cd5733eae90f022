"""Deprecated: the SETRAF compatibility adapter moved to :mod:`langchain_setraf.ert.compat`.

Importing this module warns ``DeprecationWarning``; it is removed in 0.5.0. Import the same
names from ``langchain_setraf.ert.compat``.
"""

from __future__ import annotations

import warnings

from langchain_setraf.ert.compat import (
    GenerationTimeoutError,
    TextGenerationPipeline,
    analyze_data_with_mistral,
    as_text_generation_pipeline,
    generate_dynamic_legend_and_explanation,
    generate_graph_explanation_with_llm,
    generate_text_with_streaming,
)

__all__ = [
    "GenerationTimeoutError",
    "TextGenerationPipeline",
    "analyze_data_with_mistral",
    "as_text_generation_pipeline",
    "generate_dynamic_legend_and_explanation",
    "generate_graph_explanation_with_llm",
    "generate_text_with_streaming",
]

warnings.warn(
    "langchain_setraf.ert.legacy is deprecated and will be removed in 0.5.0; "
    "import from langchain_setraf.ert.compat instead",
    DeprecationWarning,
    stacklevel=2,
)
