"""Bounds on the JSON schemas that become a decoding constraint.

A JSON schema given as ``response_format`` or as a tool's ``parameters`` is compiled into a
grammar (llama.cpp's GBNF, llguidance) whose size follows the schema's numbers: a 281-byte
schema with ``minItems: 1e8`` made a replica allocate 3.4 GB before answering 500. Every
chat model of this package and the OpenAI-compatible ingress run :func:`check_schema`
before anything is compiled: a schema beyond :class:`SchemaLimits` is refused with
:class:`SchemaTooComplexError`, naming the keyword, its place in the schema and the bound.
The check walks the schema once (linear in its size) and never follows a remote ``$ref``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["DEFAULT_SCHEMA_LIMITS", "SchemaLimits", "SchemaTooComplexError", "check_schema"]


class SchemaTooComplexError(ValueError):
    """A JSON schema beyond :class:`SchemaLimits` (keyword, place and bound named)."""


@dataclass(frozen=True)
class SchemaLimits:
    """What a constraint schema may ask for.

    Attributes:
        max_count: Largest value of a size keyword (``minItems``, ``maxItems``,
            ``minLength``, ``maxLength``, ``minProperties``, ``maxProperties``,
            ``minContains``, ``maxContains``), and of the ``{n,m}`` repeats of a
            ``pattern`` (nested repeats multiplied).
        max_total_count: Sum of all those values over the schema, ``$ref`` targets counted
            at every use.
        max_depth: Deepest nesting of subschemas, through ``$ref`` included.
        max_nodes: Subschemas in the schema, ``$ref`` targets counted at every use.
        max_properties: Properties (or pattern properties) of one object.
        max_enum: Values of one ``enum``; branches of one ``anyOf``/``oneOf``/``allOf``;
            items of one ``prefixItems``.
        max_refs: ``$ref`` keywords in the schema (each must be local: ``#`` or ``#/…``).
        max_pattern_length: Characters of one ``pattern``.
    """

    max_count: int = 4096
    max_total_count: int = 65536
    max_depth: int = 32
    max_nodes: int = 4096
    max_properties: int = 256
    max_enum: int = 1024
    max_refs: int = 256
    max_pattern_length: int = 1000


DEFAULT_SCHEMA_LIMITS = SchemaLimits()

_COUNT_KEYWORDS = (
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
)
#: Keywords whose value is one subschema.
_ONE = (
    "items",
    "additionalItems",
    "additionalProperties",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
)
#: Keywords whose value is a list of subschemas.
_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
#: Keywords whose value maps names to subschemas.
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")

_Pointer = tuple[str, ...]


@dataclass
class _Node:
    """What one subtree holds, ``$ref`` targets not followed."""

    nodes: int
    depth: int
    counts: int
    refs: list[tuple[_Pointer, int]]  # target, depth of the $ref inside this subtree


def _where(path: _Pointer) -> str:
    """A JSON pointer to the place (its last 100 characters when longer)."""
    text = "#" + "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)
    return text if len(text) <= 100 else "#…" + text[-100:]


def _count_value(value: Any, key: str, path: _Pointer, limits: SchemaLimits) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaTooComplexError(
            f"{_where(path)}: {key} must be a non-negative integer, got {value!r}"
        )
    if not math.isfinite(value) or value < 0 or value > limits.max_count:
        raise SchemaTooComplexError(
            f"{_where(path)}: {key}={value!r} is beyond the limit of {limits.max_count}"
        )
    return int(value)


def _pattern_repeats(pattern: str, where: str, limits: SchemaLimits) -> None:
    """Refuse a pattern whose ``{n,m}`` repeats expand too far (nested repeats multiply)."""
    pos = 0

    def quantifier() -> int:
        nonlocal pos
        if pos >= len(pattern) or pattern[pos] != "{":
            return 1
        end = pattern.find("}", pos)
        body = pattern[pos + 1 : end] if end > 0 else ""
        parts = body.split(",")
        if end < 0 or len(parts) > 2 or not all(p.strip().isdigit() or p == "" for p in parts):
            return 1  # a literal brace
        bound = max(int(p) for p in parts if p.strip()) if any(parts) else 1
        pos = end + 1
        if bound > limits.max_count:
            raise SchemaTooComplexError(
                f"{where}: pattern repeat {{{body}}} is beyond the limit of {limits.max_count}"
            )
        return bound

    def sequence(level: int) -> int:
        nonlocal pos
        if level > limits.max_depth:
            raise SchemaTooComplexError(
                f"{where}: pattern groups nested deeper than {limits.max_depth} levels"
            )
        total = 0
        while pos < len(pattern) and pattern[pos] != ")":
            ch = pattern[pos]
            if ch == "(":
                pos += 1
                inner = sequence(level + 1)
                pos += 1  # the ")"
            elif ch == "[":
                close = pattern.find("]", pos + 2)
                pos = len(pattern) if close < 0 else close + 1
                inner = 1
            else:
                pos += 2 if ch == "\\" else 1
                inner = 1
            total += inner * quantifier()
            if total > limits.max_count:
                raise SchemaTooComplexError(
                    f"{where}: pattern repeats expand beyond the limit of {limits.max_count} "
                    "(nested repeats multiply)"
                )
        return total

    while pos < len(pattern):  # an unbalanced ")" ends a sequence: go on after it
        sequence(0)
        pos += 1


class _Walker:
    def __init__(self, limits: SchemaLimits) -> None:
        self.limits = limits
        self.info: dict[_Pointer, _Node] = {}
        self.n_refs = 0
        self.n_nodes = 0

    def walk(self, schema: Any, path: _Pointer, depth: int) -> _Node:
        lim = self.limits
        if depth > lim.max_depth:
            raise SchemaTooComplexError(
                f"{_where(path)}: schema nested deeper than {lim.max_depth} levels"
            )
        self.n_nodes += 1
        if self.n_nodes > lim.max_nodes:
            raise SchemaTooComplexError(f"schema has more than {lim.max_nodes} subschemas")
        node = _Node(nodes=1, depth=0, counts=0, refs=[])
        self.info[path] = node
        if not isinstance(schema, Mapping):
            if isinstance(schema, bool):
                return node
            raise SchemaTooComplexError(
                f"{_where(path)}: a schema must be an object or a boolean, "
                f"got {type(schema).__name__}"
            )
        for key in _COUNT_KEYWORDS:
            if key in schema:
                node.counts += _count_value(schema[key], key, path, lim)
        ref = schema.get("$ref")
        if ref is not None:
            node.refs.append((self._target(ref, path), 0))
        pattern = schema.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str) or len(pattern) > lim.max_pattern_length:
                raise SchemaTooComplexError(
                    f"{_where(path)}: pattern must be a string of at most "
                    f"{lim.max_pattern_length} characters"
                )
            _pattern_repeats(pattern, _where(path), lim)
        for key in ("enum", "required"):
            values = schema.get(key)
            bound = lim.max_enum if key == "enum" else lim.max_properties
            if isinstance(values, list) and len(values) > bound:
                raise SchemaTooComplexError(
                    f"{_where(path)}: {key} has {len(values)} values; the limit is {bound}"
                )
        children: list[tuple[Any, _Pointer]] = []
        for key in _ONE:
            if key in schema:
                value = schema[key]
                if key == "items" and isinstance(value, list):  # draft 4-2019 tuple form
                    children += [(v, (*path, key, str(i))) for i, v in enumerate(value)]
                else:
                    children.append((value, (*path, key)))
        for key in _LIST:
            if key in schema:
                values = schema[key]
                if not isinstance(values, list):
                    raise SchemaTooComplexError(f"{_where(path)}: {key} must be a list")
                if len(values) > lim.max_enum:
                    raise SchemaTooComplexError(
                        f"{_where(path)}: {key} has {len(values)} entries; the limit is "
                        f"{lim.max_enum}"
                    )
                children += [(v, (*path, key, str(i))) for i, v in enumerate(values)]
        for key in _MAP:
            if key in schema:
                values = schema[key]
                if not isinstance(values, Mapping):
                    raise SchemaTooComplexError(f"{_where(path)}: {key} must be an object")
                if key not in ("$defs", "definitions") and len(values) > lim.max_properties:
                    raise SchemaTooComplexError(
                        f"{_where(path)}: {key} has {len(values)} entries; the limit is "
                        f"{lim.max_properties}"
                    )
                children += [(v, (*path, key, str(k))) for k, v in values.items()]
        for value, child_path in children:
            sub = self.walk(value, child_path, depth + 1)
            node.nodes += sub.nodes
            node.depth = max(node.depth, sub.depth + 1)
            node.counts += sub.counts
            node.refs += [(target, d + 1) for target, d in sub.refs]
        return node

    def _target(self, ref: Any, path: _Pointer) -> _Pointer:
        self.n_refs += 1
        if self.n_refs > self.limits.max_refs:
            raise SchemaTooComplexError(f"schema has more than {self.limits.max_refs} $ref")
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise SchemaTooComplexError(
                f"{_where(path)}: $ref {ref!r} is not a local reference ('#' or '#/…'); "
                "remote and $id references are not followed"
            )
        parts = ref[2:].split("/") if ref != "#" else []
        return tuple(unquote(p).replace("~1", "/").replace("~0", "~") for p in parts)


def check_schema(
    schema: Any, limits: SchemaLimits | None = None, *, what: str = "JSON schema"
) -> None:
    """Refuse a schema whose grammar would be too large to build or to run.

    Args:
        schema: The JSON schema (a mapping, or a boolean schema).
        limits: The bounds (default :data:`DEFAULT_SCHEMA_LIMITS`).
        what: How the error names the schema (``"response_format"``, ``"tool 'add'"``…).

    Raises:
        SchemaTooComplexError: a size keyword, nesting, property/enum count, ``pattern``
            repeat or ``$ref`` (remote, dangling, cyclic) beyond the limits; the message
            names ``what``, the place as a JSON pointer and the bound.
    """
    lim = limits or DEFAULT_SCHEMA_LIMITS
    walker = _Walker(lim)
    try:
        walker.walk(schema, (), 0)
        _check_expanded(walker, lim)
    except SchemaTooComplexError as exc:
        raise SchemaTooComplexError(f"{what} refused: {exc}") from None


def _check_expanded(walker: _Walker, lim: SchemaLimits) -> None:
    """Follow ``$ref`` from the root: no cycle, and the expanded schema within the limits."""
    done: dict[_Pointer, tuple[int, int, int]] = {}
    visiting: list[_Pointer] = []

    def expand(target: _Pointer) -> tuple[int, int, int]:
        if target in done:
            return done[target]
        if target in visiting:
            cycle = " -> ".join(_where(p) for p in [*visiting[visiting.index(target) :], target])
            raise SchemaTooComplexError(f"$ref cycle {cycle}")
        node = walker.info.get(target)
        if node is None:
            raise SchemaTooComplexError(f"$ref {_where(target)} does not name a subschema")
        visiting.append(target)
        nodes, depth, counts = node.nodes, node.depth, node.counts
        for sub_target, at in node.refs:
            n, d, c = expand(sub_target)
            nodes, depth, counts = nodes + n, max(depth, at + d), counts + c
            if nodes > lim.max_nodes:
                raise SchemaTooComplexError(
                    f"schema expands ($ref followed) to more than {lim.max_nodes} subschemas"
                )
            if depth > lim.max_depth:
                raise SchemaTooComplexError(
                    f"schema nests ($ref followed) deeper than {lim.max_depth} levels"
                )
            if counts > lim.max_total_count:
                raise SchemaTooComplexError(
                    f"the size keywords add up ($ref followed) to more than {lim.max_total_count}"
                )
        visiting.pop()
        done[target] = (nodes, depth, counts)
        return done[target]

    _, _, counts = expand(())
    if counts > lim.max_total_count:
        raise SchemaTooComplexError(
            f"the size keywords add up to {counts}, more than {lim.max_total_count}"
        )
