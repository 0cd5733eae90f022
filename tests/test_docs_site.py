"""The documentation site: `mkdocs build --strict` passes, every page is reachable, the API
pages name only the public API, and the README's links into docs/ resolve."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
MKDOCS_YML = REPO / "mkdocs.yml"
_MISSING = [
    name
    for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
    if importlib.util.find_spec(name.split(".")[0]) is None
    or importlib.util.find_spec(name) is None
]
needs_mkdocs = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"the docs extra is not installed (missing {', '.join(_MISSING)}): "
    "pip install -e '.[docs]'",
)


def _mkdocs_build(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    """Runs this interpreter's mkdocs (the venv's) in strict mode on `config`."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    args = ["build", "--strict", "-f", str(config), "-d", str(site_dir)]
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", *args],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _nav_pages(nav: Any) -> list[str]:
    """Every page path named in mkdocs.yml's `nav`, at any depth."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    raise AssertionError(f"mkdocs.yml: unexpected nav entry {nav!r}")


def _config() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML (a dependency of mkdocs) is not installed")
    config = yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


@pytest.mark.slow
@needs_mkdocs
def test_site_builds_strictly_with_zero_warnings(tmp_path: Path) -> None:
    """`mkdocs build --strict` from the repository root: no broken link, anchor or docstring."""
    result = _mkdocs_build(MKDOCS_YML, tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    assert "WARNING" not in output, output
    # the API pages were rendered from the docstrings, not left as `:::` directives
    models = (tmp_path / "site" / "api" / "models" / "index.html").read_text(encoding="utf-8")
    assert 'id="langchain_setraf.ChatGGUF"' in models
    assert ":::" not in models
    # LangChain's docstring template reached the page as Markdown, not as raw RST
    assert ".. code-block::" not in models
    assert "<strong>Instantiate</strong>" in models


@pytest.mark.slow
@needs_mkdocs
def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    """Strict mode is really on: a copy of the site with one dead link does not build."""
    shutil.copy(MKDOCS_YML, tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    (tmp_path / "src").symlink_to(REPO / "src")
    page = tmp_path / "docs" / "status.md"
    page.write_text(
        page.read_text(encoding="utf-8") + "\nSee [gone](no-such-page.md).\n", encoding="utf-8"
    )
    result = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "status.md" in output and "no-such-page.md" in output, output


def test_every_docs_page_is_in_the_nav() -> None:
    """No orphan page: every docs/**/*.md is reachable from the site's navigation."""
    nav = set(_nav_pages(_config()["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert not pages - nav, f"pages missing from mkdocs.yml's nav: {sorted(pages - nav)}"
    assert not nav - pages, f"nav entries with no page: {sorted(nav - pages)}"


def test_api_pages_name_only_the_public_api() -> None:
    """`:::` directives name only what `langchain_setraf` or `langchain_setraf.ert` export."""
    import langchain_setraf
    import langchain_setraf.ert

    public = {f"langchain_setraf.{n}" for n in langchain_setraf.__all__}
    public |= {f"langchain_setraf.ert.{n}" for n in langchain_setraf.ert.__all__}
    named: dict[str, str] = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for ident in re.findall(r"^::: (\S+)$", page.read_text(encoding="utf-8"), flags=re.M):
            named[ident] = page.name
    assert named, "docs/api/ documents nothing"
    private = {ident: page for ident, page in named.items() if ident not in public}
    assert not private, f"API pages name non-exported objects: {private}"


def test_readme_links_resolve() -> None:
    """Every relative link in the README names a file of the repository, and every link
    into docs/ names a page of the site."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    nav = set(_nav_pages(_config()["nav"]))
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert any(link.startswith("docs/") for link in relative)
    for link in relative:
        path = link.split("#", 1)[0]
        assert (REPO / path).exists(), f"README links to {link}, which does not exist"
        if path.startswith("docs/") and path.endswith(".md"):
            assert path.removeprefix("docs/") in nav, f"README links to {link}, not in the nav"


@needs_mkdocs
def test_langchain_docstring_sections_become_markdown() -> None:
    """The site's Griffe extension fences code blocks and lists `name: type` entries, and
    leaves Google sections to Griffe."""
    path = DOCS / "_ext" / "langchain_docstrings.py"
    spec = importlib.util.spec_from_file_location("langchain_docstrings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docstring = (
        "Summary.\n\n"
        "Key init args — client params:\n"
        "    n_ctx: int\n"
        "        Context window\n"
        "        in tokens.\n\n"
        "Instantiate:\n"
        "    .. code-block:: python\n\n"
        "        llm = GGUFLLM(\n"
        "            temperature=0,\n"
        "        )\n\n"
        "Args:\n"
        "    x: kept for Griffe.\n"
    )
    assert module.sphinx_roles_to_code(
        "See :class:`~langchain_setraf.cache.ModelCache` and :func:`init_llm`."
    ) == ("See `ModelCache` and `init_llm`.")
    assert module.langchain_sections_to_markdown(docstring) == (
        "Summary.\n\n"
        "**Key init args — client params**\n\n"
        "- `n_ctx` (`int`): Context window in tokens.\n\n"
        "**Instantiate**\n\n"
        "```python\n"
        "llm = GGUFLLM(\n"
        "    temperature=0,\n"
        ")\n"
        "```\n\n"
        "Args:\n"
        "    x: kept for Griffe.\n"
    )
