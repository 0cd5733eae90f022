"""The JSON constraint compiled for llama.cpp: a GBNF grammar built from the JSON schema.

llama.cpp's own converter (``llama_cpp.llama_grammar.json_schema_to_gbnf``) does the work;
two things are changed: properties keep the schema's order (the order is part of the
request, e.g. a material before its alternative), and JSON strings may not contain raw
control characters (the stock rule lets a small model write a newline inside a string:
invalid JSON).
"""

from __future__ import annotations

import importlib
import json
from functools import lru_cache
from typing import Any

from langchain_setraf.backends.base import JSONConstraint

__all__ = ["compile_constraint", "json_grammar"]

#: JSON's string character rule: no raw control characters.
_JSON_CHAR = (
    r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F] [0-9a-fA-F])"
)


@lru_cache(maxsize=64)
def _json_grammar_cached(schema_json: str | None) -> str:
    llama_grammar = importlib.import_module("llama_cpp.llama_grammar")
    if schema_json is None:
        return str(llama_grammar.JSON_GBNF)
    gbnf = str(llama_grammar.json_schema_to_gbnf(schema_json))
    lines = [_JSON_CHAR if ln.startswith("char ::=") else ln for ln in gbnf.splitlines()]
    return "\n".join(lines)


def json_grammar(schema: dict[str, Any] | None) -> str:
    """GBNF grammar for JSON fitting ``schema`` (any JSON object when ``None``)."""
    return _json_grammar_cached(None if schema is None else json.dumps(schema))


def compile_constraint(llama_cpp: Any, constraint: JSONConstraint, grammar: Any = None) -> Any:
    """The ``LlamaGrammar`` for a request: its JSON constraint, or a raw GBNF ``grammar``
    string passed by the caller (``None`` when neither).

    Raises:
        ValueError: both a JSON constraint and a grammar were given.
    """
    if constraint is not None and grammar is not None:
        raise ValueError("a JSON constraint and a GBNF grammar cannot be combined")
    if constraint is not None:
        grammar = json_grammar(constraint.get("schema"))
    if grammar is None or not isinstance(grammar, str):
        return grammar  # None, or an already-built LlamaGrammar
    return llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
