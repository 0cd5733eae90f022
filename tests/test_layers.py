"""The package's import graph, read from the source with ``ast``: layers, no circle, no reach-in.

Every ``import`` statement of every module under ``src/langchain_setraf`` is an edge:
module-level, inside a function, and under ``if TYPE_CHECKING:``. The rules:

- **no circle** among the imports that run (module-level and function-level; a
  ``TYPE_CHECKING`` import never runs);
- **no upward arrow**: a module imports only modules of its own layer or of a lower one in
  :data:`LAYERS` (every module must be assigned a layer, so a new module fails here until it
  is placed);
- **no reach-in**: a module imports no private name (a ``_module`` or a ``_name``) of a
  module of another package; a backend package's private names stay inside it.

``docs/architecture.md`` draws :data:`LAYERS`; keep the two in step.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "langchain_setraf"

#: The layers, lowest first. An entry is a module (``"cache"``, relative to the package),
#: or ``"pkg.*"``: every module of that package (its internal order is checked by the
#: circle rule alone).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation: no import of the package, or of this layer only",
        (
            "_version",
            "settings",
            "lazy_exports",
            "_arguments",
            "async_iter",
            "_call_limits",
            "_cgroup",
            "cpu",
            "_tools",
            "memory",
            "models",
            "pull_lock",
            "schema_limits",
        ),
    ),
    (
        "backend contract and shared backend parts",
        (
            "backends",
            "backends.base",
            "backends.options",
            "backends.chat_template",
            "backends.http_limits",
            "backends.server_errors",
            "backends.tokenizer_cache",
            "plugins",
        ),
    ),
    (
        "in-process and HTTP backends",
        (
            "backends.gguf",
            "backends.gguf.file",
            "backends.kv_cache",
            "backends.llama_buffers",
            "backends.context_fit",
            "backends.gguf.runtime",
            "backends.gguf.mlock",
            "backends.gguf.gbnf",
            "backends.gguf.repack_probe",
            "backends.gguf.estimate",
            "backends.gguf.weights",
            "backends.gguf.vocabulary",
            "backends.gguf.prompt_cache",
            "backends.gguf.backend",
            "backends.gguf.embedding",
            "backends.transformers",
            "backends.transformers.runtime",
            "backends.transformers.kv_estimate",
            "backends.transformers.constraint",
            "backends.transformers.generate",
            "backends.transformers.tokenizer",
            "backends.transformers.backend",
            "backends.transformers.embedding",
            "backends.openai_compat",
            "backends.openai_embeddings",
        ),
    ),
    (
        "the managed llama.cpp server backend (its processes and its client)",
        (
            "backends.llama_server",
            "backends.llama_server.private_files",
            "backends.llama_server.rotating_log",
            "backends.llama_server.server_memory",
            "backends.llama_server.engine",
            "backends.llama_server.supervisor",
            "backends.llama_server.xllamacpp_host",
            "backends.llama_server.managed",
            "backends.llama_server.backend",
            "backends.llama_server.embedding",
        ),
    ),
    ("the model cache", ("cache",)),
    (
        "base classes and load options",
        ("_cached", "_load_options", "llm_base", "chat_base"),
    ),
    ("LangChain classes", ("llms", "chat_models", "transformers_llm", "embeddings")),
    ("services over the classes", ("factory", "pull")),
    ("ERT readers and chains", ("ert.*", "ert.readers.*")),
    (
        "the Ray Serve application",
        (
            "serve",
            "serve.asgi_bridge",
            "serve.ingress_policy",
            "serve.ray_config",
            "serve.ray_router",
            "serve.openai_routes",
            "serve.ray_app",
        ),
    ),
    ("command line", ("cli", "cli_model", "cli_servers", "ert.cli")),
    (
        "the public package and deprecated aliases (removed in 0.5.0)",
        (
            "",  # langchain_setraf/__init__.py: lazy exports of the public API
            "gguf_file",
            "chat_template",
            "backends.repack_probe",
            "serve.engine",
            "serve.managed",
            "serve.private_files",
        ),
    ),
)

#: Packages whose private names are shared by their own modules only.
BACKEND_PACKAGES = ("backends.gguf", "backends.transformers", "backends.llama_server")

#: Private reach-ins tolerated: (importer, the private name it imports) or (module,
#: ``obj._member`` it uses). Empty since ``serve`` and ``ert`` use public surfaces only
#: (issue 22); a reach-in fails the test.
KNOWN_REACH_INS: frozenset[tuple[str, str]] = frozenset()

#: Private members of other distributions' objects (not this package's reach-ins).
THIRD_PARTY_PRIVATE: frozenset[tuple[str, str]] = frozenset(
    {
        # the standard library's frame access (CPython's documented sys._getframe): a
        # warning raised in a validator points at the line that built the object
        ("_call_limits", "sys._getframe"),
    }
)


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports module ``target`` (and ``name`` from it, if any)."""

    source: str
    target: str
    name: str | None
    function_level: bool
    type_checking: bool
    line: int


def _modules(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Module name (relative to the package, ``""`` for it) -> (file, is a package)."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        parts = list(path.relative_to(src / ROOT).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, package)
    return out


def _relative(name: str) -> str | None:
    """``langchain_setraf.x.y`` -> ``x.y``; ``None`` for another distribution's module."""
    if name == ROOT:
        return ""
    if name.startswith(ROOT + "."):
        return name[len(ROOT) + 1 :]
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def edges_of(
    module: str, path: Path, package: bool, modules: Iterable[str], source: str | None = None
) -> list[Edge]:
    """Every import of ``module`` of the package by the module at ``path``."""
    known = set(modules)
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found: list[Edge] = []

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = [ROOT, *module.split(".")] if module else [ROOT]
        if not package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def visit(node: ast.AST, in_function: bool, in_type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            fn = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            tc = in_type_checking
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), fn, True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), fn, tc)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = _relative(alias.name)
                    if target is not None:
                        found.append(Edge(module, target, None, fn, tc, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                target = _relative(absolute(child))
                if target is not None:
                    for alias in child.names:
                        sub = f"{target}.{alias.name}" if target else alias.name
                        if sub in known:  # ``from pkg import module``
                            found.append(Edge(module, sub, None, fn, tc, child.lineno))
                        else:
                            found.append(Edge(module, target, alias.name, fn, tc, child.lineno))
            visit(child, fn, tc)

    visit(tree, False, False)
    return found


def all_edges(src: Path = SRC) -> list[Edge]:
    modules = _modules(src)
    out: list[Edge] = []
    for name, (path, package) in modules.items():
        out.extend(edges_of(name, path, package, modules))
    return out


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module``, or ``None`` if it is not assigned."""
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if member == module:
                return index
    best: tuple[int, int] | None = None  # (pattern length, layer): the longest pattern wins
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if member.endswith(".*"):
                prefix = member[:-2]
                if module.startswith(prefix + ".") or module == prefix:
                    if best is None or len(prefix) > best[0]:
                        best = (len(prefix), index)
    return None if best is None else best[1]


def find_cycle(edges: Iterable[Edge]) -> list[str] | None:
    """One circle among the edges that run at import or call time, or ``None``."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if not e.type_checking and e.source != e.target:
            graph.setdefault(e.source, set()).add(e.target)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = dfs(start)
            if cycle:
                return cycle
    return None


def upward(edges: Iterable[Edge]) -> list[str]:
    """Each import from a lower layer to a higher one, described."""
    out = []
    for e in edges:
        low, high = layer_of(e.source), layer_of(e.target)
        if low is not None and high is not None and high > low:
            out.append(
                f"{e.source or ROOT} (layer {low}: {LAYERS[low][0]}) imports "
                f"{e.target or ROOT} (layer {high}: {LAYERS[high][0]}) at line {e.line}"
            )
    return out


def _owner(module: str, modules: dict[str, tuple[Path, bool]]) -> str:
    """The package whose private names ``module`` may use: its backend package, else the
    package that holds it (``""``: the top-level package)."""
    for backend in BACKEND_PACKAGES:
        if module == backend or module.startswith(backend + "."):
            return backend
    if module in modules and modules[module][1]:
        return module
    return module.rpartition(".")[0]


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def reach_ins(edges: Iterable[Edge], modules: dict[str, tuple[Path, bool]]) -> set[tuple[str, str]]:
    """(importer, private name) for each private name imported from where it is not shared.

    A private module (``_llm_base``) is shared by the modules of its package; a private
    name (``from m import _x``) by no other module. Inside a backend package both are
    shared by all its modules.
    """
    out = set()
    for e in edges:
        same_backend = any(
            _owner(e.source, modules) == _owner(e.target, modules) == backend
            for backend in BACKEND_PACKAGES
        )
        if same_backend:
            continue
        parts = e.target.split(".") if e.target else []
        private_module = any(_private(p) for p in parts)
        if private_module and _owner(e.source, modules) != _owner(e.target, modules):
            out.add((e.source, e.target + (f".{e.name}" if e.name else "")))
        elif e.name is not None and _private(e.name) and e.source != e.target:
            out.add((e.source, f"{e.target}.{e.name}"))
    return out


def private_attribute_uses(src: Path = SRC) -> set[tuple[str, str]]:
    """(module, expression) for each ``obj._name`` where ``obj`` is not ``self``, ``cls``
    or ``super()``, outside the backend packages: another object's private member."""
    out = set()
    for module, (path, _) in _modules(src).items():
        if any(module == b or module.startswith(b + ".") for b in BACKEND_PACKAGES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if isinstance(value, ast.Call) and ast.unparse(value.func) == "super":
                continue
            out.add((module, ast.unparse(node)))
    return out


@pytest.fixture(scope="module")
def modules() -> dict[str, tuple[Path, bool]]:
    return _modules()


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return all_edges()


def test_the_graph_is_read(modules: dict[str, tuple[Path, bool]], edges: list[Edge]) -> None:
    # the reader sees the imports it must see (a reader that saw none would pass everything)
    assert {"cache", "backends.gguf.backend", "serve.ray_app", ""} <= set(modules)
    pairs = {(e.source, e.target, e.name) for e in edges}
    assert ("cache", "backends.base", "LoadSpec") in pairs
    assert any(e.source == "serve.ray_app" and e.function_level for e in edges)
    assert any(e.source == "" and e.type_checking for e in edges)
    assert len(edges) > 300


def test_every_module_has_a_layer(modules: dict[str, tuple[Path, bool]]) -> None:
    missing = sorted(m or ROOT for m in modules if layer_of(m) is None)
    assert not missing, f"place these modules in a layer of tests/test_layers.py: {missing}"


def test_no_layer_entry_is_stale(modules: dict[str, tuple[Path, bool]]) -> None:
    stale = [
        member
        for _, members in LAYERS
        for member in members
        if not member.endswith(".*") and member not in modules
    ]
    assert not stale, f"modules named in LAYERS that do not exist: {stale}"


def test_no_import_circle(edges: list[Edge]) -> None:
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(m or ROOT for m in cycle or [])


def test_no_upward_import(edges: list[Edge]) -> None:
    found = upward(edges)
    assert not found, "imports from a lower layer up:\n" + "\n".join(found)


def test_no_private_reach_in(modules: dict[str, tuple[Path, bool]], edges: list[Edge]) -> None:
    found = reach_ins(edges, modules) | (private_attribute_uses() - THIRD_PARTY_PRIVATE)
    new = sorted(found - KNOWN_REACH_INS)
    assert not new, f"private names imported from another package (make them public): {new}"
    gone = sorted(KNOWN_REACH_INS - found)
    assert not gone, f"these reach-ins are gone: delete them from KNOWN_REACH_INS: {gone}"


# -- the rules catch what they must ---------------------------------------------------------


def _edges_with(tmp_path: Path, files: dict[str, str]) -> list[Edge]:
    for rel, text in files.items():
        path = tmp_path / ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return all_edges(tmp_path)


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    # memory (foundation) importing the cache, even inside a function
    edges = _edges_with(
        tmp_path,
        {
            "__init__.py": "",
            "cache.py": "",
            "memory.py": "def f():\n    from langchain_setraf.cache import get_model_cache\n",
        },
    )
    found = upward(edges)
    assert len(found) == 1 and found[0].startswith("memory (layer 0"), found


def test_a_circle_held_apart_by_a_function_level_import_is_caught(tmp_path: Path) -> None:
    edges = _edges_with(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from langchain_setraf import b\n",
            "b.py": "def f():\n    from . import a\n",
        },
    )
    assert find_cycle(edges) in (["a", "b", "a"], ["b", "a", "b"])
    # a TYPE_CHECKING import never runs: no circle
    edges = _edges_with(
        tmp_path,
        {
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n",
        },
    )
    assert find_cycle(edges) is None


def test_a_reach_in_is_caught(tmp_path: Path) -> None:
    edges = _edges_with(
        tmp_path,
        {
            "__init__.py": "",
            "_llm_base.py": "",
            "llms.py": "from langchain_setraf._llm_base import CachedLLM\n",
            "serve/__init__.py": "",
            "serve/app.py": "from langchain_setraf._llm_base import CachedLLM\n"
            "from langchain_setraf.llms import _helper\n",
            "backends/__init__.py": "",
            "backends/gguf/__init__.py": "",
            "backends/gguf/a.py": "from langchain_setraf.backends.gguf.b import _x\n",
            "backends/gguf/b.py": "",
            "backends/other.py": "from langchain_setraf.backends.gguf.b import _x\n",
            "serve/routes.py": "from .app import _y\n\ndef f(llm):\n    return llm._astream()\n",
        },
    )
    found = reach_ins(edges, _modules(tmp_path))
    assert found == {
        ("serve.app", "_llm_base.CachedLLM"),
        ("serve.app", "llms._helper"),
        ("serve.routes", "serve.app._y"),
        ("backends.other", "backends.gguf.b._x"),
    }
    assert private_attribute_uses(tmp_path) == {("serve.routes", "llm._astream")}


def test_an_unplaced_module_has_no_layer() -> None:
    assert layer_of("brand_new_module") is None
    assert layer_of("ert.readers.anything") == layer_of("ert.chains")
    assert layer_of("cache") == 4


def test_the_architecture_page_draws_this_table() -> None:
    # docs/architecture.md's picture: one block per layer, numbered as LAYERS, naming each
    # module of the layer (or its folder)
    page = (SRC.parent / "docs" / "architecture.md").read_text()
    picture = page.split("## Layers", 1)[1].split("```", 2)[1]
    blocks: dict[int, str] = {}
    current = -1
    for line in picture.splitlines():
        head = line[:4].strip()
        if head.isdigit():
            current = int(head)
        if current >= 0:
            blocks[current] = blocks.get(current, "") + line + "\n"
    assert sorted(blocks) == list(range(len(LAYERS)))
    wrong = []
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            name = member.removesuffix(".*")
            parts = name.split(".")
            candidates = (
                {
                    name,
                    name.replace(".", "/") + "/",
                    "/".join(parts[:-1]) + "/",
                    parts[-1],
                }
                if name
                else {"__init__.py"}
            )
            if not any(
                c and c != "/" and (f" {c}" in blocks[index] or f"/{c}" in blocks[index])
                for c in candidates
            ):
                wrong.append((member, index))
    assert not wrong, f"not drawn in their layer in docs/architecture.md: {wrong}"


def test_old_import_paths_warn_and_give_the_same_objects() -> None:
    # a fresh interpreter: a module warns once, when first imported
    child = r"""
import importlib, json, warnings
old_new = {
    "langchain_setraf.gguf_file": ("langchain_setraf.backends.gguf.file", "read_gguf_header"),
    "langchain_setraf.chat_template": (
        "langchain_setraf.backends.gguf.vocabulary", "render_gguf_prompt"),
    "langchain_setraf.serve.managed": (
        "langchain_setraf.backends.llama_server.managed", "ManagedServer"),
    "langchain_setraf.serve.private_files": (
        "langchain_setraf.backends.llama_server.private_files", "RuntimeDir"),
    "langchain_setraf.serve.engine": (
        "langchain_setraf.backends.llama_server.engine", "server_argv"),
    "langchain_setraf.backends.repack_probe": (
        "langchain_setraf.backends.gguf.repack_probe", "repack_verdict"),
}
out = {}
for old, (new, name) in old_new.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(importlib.import_module(old), name)
    same = value is getattr(importlib.import_module(new), name)
    out[old] = [same, [str(w.message) for w in caught if w.category is DeprecationWarning]]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import langchain_setraf.serve as serve
    value = serve.running_servers
from langchain_setraf.backends.llama_server import running_servers
out["langchain_setraf.serve.running_servers"] = [
    value is running_servers, [str(w.message) for w in caught]]
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result) == 7
    for old, (same, messages) in result.items():
        assert same, old
        assert len(messages) == 1, (old, messages)
        assert old in messages[0] and "0.5.0" in messages[0], messages[0]
