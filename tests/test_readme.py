"""The README's promises that a test can hold it to: its commands and its examples."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """`.ci/run` runs the README's second set-up command exactly as written."""
    commands = [b.strip() for b in _blocks("bash")[:2]]
    assert len(commands) == 2, "the README's Set-up section must hold exactly two commands"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines(), "the README test command is not a line of .ci/run"


def test_readme_setup_commands_name_every_extra_the_tests_import() -> None:
    """The test command installs the extras whose packages the tests import."""
    test_cmd = _blocks("bash")[1]
    extras = re.search(r'-e "\.\[([^\]]+)\]"', test_cmd)
    assert extras is not None
    for extra in (
        "gguf",
        "default-model",
        "transformers",
        "app",
        "invert",
        "pull",
        "test",
        "bench",
        "docs",
    ):
        assert extra in extras.group(1).split(","), extra
    assert "chromium" in test_cmd, "the browser test needs Debian's Chromium"


@pytest.mark.slow
def test_chat_example_prints_what_the_readme_says() -> None:
    """Runs the "Chat models" example and checks the output its comments promise."""
    code = re.search(
        r"```python\n(.*?)```", _section("Chat models: `ChatGGUF` and `ChatTransformers`"), re.S
    )
    assert code is not None
    source = code.group(1)
    ast.parse(source)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README.md:chat-example", "exec"), {"__name__": "readme_example"})
    text = out.getvalue()
    # the comment next to `print(msg.tool_calls)` in the README
    promised = re.search(r"print\(msg\.tool_calls\)\s+# (\[.*\])", source)
    assert promised is not None
    expected = promised.group(1).replace(", ...", "")
    assert expected.rstrip("}]") in text, f"README promises {promised.group(1)}; got:\n{text}"
    from langchain_setraf import get_model_cache

    get_model_cache().release_all()
