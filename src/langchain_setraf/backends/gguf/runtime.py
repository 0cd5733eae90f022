"""Importing llama-cpp-python: the version floor, OpenMP's wait policy, its ``/dev/null`` handles.

Kept apart from :mod:`.backend` so that the vocabulary reader, which the backend imports,
can import llama.cpp without importing the backend.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
from typing import Any

__all__ = ["MIN_LLAMA_CPP", "OMP_WAIT_POLICY", "import_llama_cpp"]

# The oldest llama-cpp-python this package is tested with (pyproject's floor): it is the
# first whose ``llama_model_params`` has ``use_extra_bufts`` (the ``repack`` option).
MIN_LLAMA_CPP = "0.3.16"


#: How idle OpenMP workers wait between two graphs. llama.cpp is built with OpenMP, whose
#: default is to spin: on a machine whose cores are shared (a server beside the app, several
#: workers, CI) the spinning workers starve the thread that samples the next token, and
#: decoding collapsed from ~60 to under 1 token/s here (benchmarks/server_bench.py). PASSIVE
#: makes them sleep; ggml's own barriers inside a graph still spin, so an idle machine loses
#: nothing measurable. Set only when the user has not chosen (``OMP_WAIT_POLICY``).
OMP_WAIT_POLICY = "PASSIVE"


def import_llama_cpp() -> Any:
    """Import ``llama_cpp`` or raise an ``ImportError`` naming the extra to install.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` first unless the environment sets it (see
    :data:`OMP_WAIT_POLICY`); it takes effect when OpenMP is first loaded in the process.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    try:
        import llama_cpp
    except ImportError as exc:
        raise ImportError(
            f"the GGUF backend needs llama-cpp-python: pip install 'langchain-setraf[gguf]' ({exc})"
        ) from exc
    _close_devnull_at_exit()
    return llama_cpp


@functools.cache
def _close_devnull_at_exit() -> None:
    """Close llama-cpp-python's two ``/dev/null`` handles when the interpreter exits.

    ``llama_cpp._utils`` opens ``os.devnull`` twice at import (to silence llama.cpp's
    output, even from destructors) and never closes them: Python reports both as an
    unclosed-file ``ResourceWarning`` at exit. They stay open while the process runs.
    """
    atexit.register(_close_devnull)


def _close_devnull() -> None:
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None and getattr(handle, "name", None) == os.devnull:
            handle.close()
