"""What ``setraf``'s commands share: ``--model URI``, the one way every command that
loads a model names it, and the note a deprecated spelling prints.

The URI goes through the factory (:func:`~langchain_setraf.factory.init_llm`): ``default``
(the embedded SmolLM2 GGUF, in-process), ``gguf:PATH``, ``llama-server:PATH`` (a managed
server shared by the host), ``transformers:DIR``, ``openai:URL`` (attach to a running
server), a plugin's ``NAME:…``, or a bare path (``auto:``, the backend that recognises it).

Options a user gives on the command line all go to the class, which refuses, by name, one
it does not take. A command's own defaults (``interpret``'s 4096-token context, say) go only
where they apply: to a class that declares the field and, for load options, to a placement
that loads the model itself (an attached server owns its context).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from langchain_setraf.factory import DEFAULT_URI, init_llm, resolve_class

__all__ = [
    "LOAD_OPTIONS",
    "MODEL_HELP",
    "add_model_argument",
    "build_llm",
    "deprecated",
    "model_uri",
]

MODEL_HELP = (
    "model URI: default (the embedded SmolLM2), gguf:PATH, llama-server:PATH, "
    "transformers:DIR, openai:URL, or a bare path (its backend is recognised)"
)
#: Command-line defaults that are load options: an attached server has its own.
LOAD_OPTIONS = frozenset({"n_ctx"})


def deprecated(old: str, new: str) -> None:
    """Print the one-line note for a deprecated spelling ``old`` to stderr, naming ``new``."""
    print(
        f"setraf: '{old}' is deprecated and removed in 0.5.0; use '{new}'",
        file=sys.stderr,
        flush=True,
    )


def add_model_argument(parser: argparse.ArgumentParser | Any) -> None:
    """Add ``--model URI`` (default ``default``) to ``parser``."""
    parser.add_argument("--model", default=DEFAULT_URI, metavar="URI", help=MODEL_HELP)


def model_uri(model: str | None, backend: str | None = None) -> str:
    """The URI for ``--model`` and an old ``--backend NAME`` (``NAME:MODEL``).

    Raises:
        ValueError: ``--backend`` with a ``--model`` that already names a backend or is
            ``default``.
    """
    uri = model or DEFAULT_URI
    if backend is None:
        return uri
    name, sep, _ = uri.partition(":")
    if uri == DEFAULT_URI or (sep and "/" not in name and "\\" not in name):
        raise ValueError(
            f"--backend {backend} with --model {uri}: give one URI instead (--model {backend}:PATH)"
        )
    return f"{backend}:{uri}"


def build_llm(uri: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> Any:
    """The LLM for ``uri`` with the options the user ``given`` (all passed on) and the
    command's ``defaults`` (passed where they apply; see the module docstring).

    Raises:
        UnknownBackendError: The URI names no backend, or ``auto:`` found none.
        ValueError: The class refuses an option (pydantic's error names it).
    """
    backend, _, cls = resolve_class(uri)
    fields = getattr(cls, "model_fields", {})
    attached = backend.model_field == "server_url"
    kwargs = {
        name: value
        for name, value in defaults.items()
        if name not in given and name in fields and not (attached and name in LOAD_OPTIONS)
    }
    return init_llm(uri, **kwargs, **given)
