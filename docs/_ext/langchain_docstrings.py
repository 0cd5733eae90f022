"""A Griffe extension for the documentation site: LangChain's class-docstring template as Markdown.

The LangChain classes follow LangChain's docstring template (``Setup:``, ``Key init args —
completion params:``, ``Instantiate:``, ... sections holding ``.. code-block::`` examples and
``name: type`` argument lists), which is reStructuredText inside a Google docstring.
mkdocstrings renders Markdown, so at build time (never in the source) this extension turns
each such section into a bold heading, its ``.. code-block:: LANG`` blocks into fenced code
and its ``name: type`` entries into a list. Google sections (``Args:``, ``Returns:``,
``Example:``, ...) are left to Griffe's Google parser. Sphinx roles in any docstring
(``:class:`~a.B```, ``:func:`f```) become code spans (``B``, ``f``).
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

#: Section titles Griffe's Google parser handles itself (compared in lower case).
GOOGLE_SECTIONS = frozenset(
    {
        "args",
        "arguments",
        "params",
        "parameters",
        "keyword args",
        "keyword arguments",
        "other args",
        "other arguments",
        "other params",
        "other parameters",
        "raises",
        "exceptions",
        "returns",
        "yields",
        "receives",
        "examples",
        "example",
        "attributes",
        "functions",
        "methods",
        "classes",
        "modules",
        "warns",
        "warnings",
        "note",
        "notes",
        "warning",
        "see also",
        "todo",
        "type aliases",
        "deprecated",
    }
)
_HEADER = re.compile(r"^(?P<title>[A-Z][^\n]*?):$")
_CODE_BLOCK = re.compile(r"^(?P<indent>\s*)\.\. code-block::\s*(?P<lang>\S*)\s*$")
_FIELD = re.compile(r"^(?P<name>[A-Za-z_]\w*): (?P<type>\S.*)$")
_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|mod|obj|exc|data|const|ref):`(?P<target>[^`]+)`"
)


def _role_to_code(match: re.Match[str]) -> str:
    """``:class:`~a.b.C``` is ``C`` (Sphinx's ``~`` keeps the last part), else the target."""
    target = match.group("target")
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def sphinx_roles_to_code(docstring: str) -> str:
    """Rewrites Sphinx cross-reference roles as Markdown code spans.

    Args:
        docstring: Any docstring.

    Returns:
        The docstring with ``:class:`~a.B``` written ``B`` and ``:func:`f``` written ``f``.
    """
    return _ROLE.sub(_role_to_code, docstring)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _take_block(lines: list[str], start: int, deeper_than: int) -> tuple[list[str], int]:
    """The lines from `start` that are blank or indented more than `deeper_than`, trailing
    blank lines excluded, and the index after them."""
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > deeper_than):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end], end


def _code_blocks(lines: list[str]) -> list[str]:
    """``.. code-block:: LANG`` and its indented body become a fenced block."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _CODE_BLOCK.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        indent = match.group("indent")
        body, i = _take_block(lines, i + 1, len(indent))
        code = textwrap.dedent("\n".join(body)).strip("\n")
        out += [f"{indent}```{match.group('lang')}", *(indent + c for c in code.split("\n"))]
        out += [f"{indent}```"]
    return out


def _fields(lines: list[str]) -> list[str]:
    """``name: type`` lines followed by an indented description become list items."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _FIELD.match(lines[i])
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if match is None or not nxt.strip() or _indent(nxt) == 0:
            out.append(lines[i])
            i += 1
            continue
        body, i = _take_block(lines, i + 1, 0)
        text = " ".join(line.strip() for line in body if line.strip())
        if out and out[-1].strip() and not out[-1].startswith("- "):
            out.append("")
        out.append(f"- `{match.group('name')}` (`{match.group('type')}`): {text}")
    return out


def langchain_sections_to_markdown(docstring: str) -> str:
    """Rewrites LangChain's template sections of a (dedented) docstring as Markdown.

    Args:
        docstring: The docstring, as Griffe holds it (dedented).

    Returns:
        The docstring with every non-Google ``Title:`` section turned into a bold heading
        over its dedented body, its code blocks fenced and its argument entries listed.
    """
    lines = docstring.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _HEADER.match(lines[i])
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        title = match.group("title") if match else ""
        if (
            match is None
            or title.lower() in GOOGLE_SECTIONS
            or not nxt.strip()
            or _indent(nxt) == 0
        ):
            out.append(lines[i])
            i += 1
            continue
        body, i = _take_block(lines, i + 1, 0)
        section = textwrap.dedent("\n".join(body)).split("\n")
        out += [f"**{title}**", "", *_fields(_code_blocks(section))]
    return "\n".join(_code_blocks(out))


class LangChainDocstrings(griffe.Extension):
    """Applies `langchain_sections_to_markdown` to every docstring Griffe loads."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        """Rewrites the docstring of each object as it is created."""
        if obj.docstring is None:
            return
        value = sphinx_roles_to_code(obj.docstring.value)
        if ".. code-block::" in value:
            value = langchain_sections_to_markdown(value)
        obj.docstring.value = value
