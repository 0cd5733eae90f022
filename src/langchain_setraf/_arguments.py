"""Refuse unknown constructor arguments, naming the closest valid one.

Pydantic (and so LangChain) drops arguments a model does not declare: ``GGUFLLM(n_ctxx=4096)``
would load with the default context and say nothing. Every class of this package refuses
them instead, before anything else runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, model_validator

__all__ = ["RefuseUnknownArguments", "unknown_argument_message"]

#: Accepted by LangChain's own validators although they are not fields (deprecated aliases).
_LANGCHAIN_ALIASES = frozenset({"callback_manager"})


def _accepted(cls: type[BaseModel]) -> set[str]:
    names = set(_LANGCHAIN_ALIASES)
    for name, field in cls.model_fields.items():
        names.add(name)
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):
                names.add(alias)
    return names


def unknown_argument_message(owner: str, unknown: Iterable[str], accepted: Iterable[str]) -> str:
    """``"GGUFLLM got an unknown argument 'n_ctxx': did you mean 'n_ctx'?"``-style text."""
    valid = sorted(a for a in accepted if not a.startswith("_"))
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.7)
        hint = (
            f"did you mean {' or '.join(repr(c) for c in close)}?"
            if close
            else "no argument has a similar name"
        )
        parts.append(f"{name!r} ({hint})")
    return (
        f"{owner} got unknown argument(s): {'; '.join(parts)}. Valid arguments: {', '.join(valid)}."
    )


class RefuseUnknownArguments(BaseModel):
    """Base model whose constructor raises on an argument it does not declare."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_arguments(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            accepted = _accepted(cls)
            unknown = [k for k in data if isinstance(k, str) and k not in accepted]
            if unknown:
                message = unknown_argument_message(cls.__name__, unknown, accepted)
                if "model_kwargs" in accepted:
                    message += (
                        " Generation-call arguments this class does not declare go in "
                        "model_kwargs={...}."
                    )
                raise ValueError(message)
        return data
