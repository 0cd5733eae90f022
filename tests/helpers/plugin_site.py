"""Test plugin distributions (``tests/plugins/``) installed by pip into a site directory,
and child processes that see them: how the plugin tests exercise entry points for real.

- :func:`install_plugins`: ``pip install --no-deps --target SITE`` of each named folder.
- :func:`run_with_plugins`: run Python code with SITE and this checkout's
  ``langchain_setraf`` first on the path (the plugins import its public base classes);
  ``$SETRAF_PLUGINS`` is cleared unless given; the last line of output is JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import langchain_setraf

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def install_plugins(target: Path, *names: str) -> Path:
    """Install the test plugin distributions ``names`` into ``target``; returns it."""
    for name in names:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
             "--no-build-isolation", "--target", str(target), str(PLUGINS / name)],
            check=True,
            capture_output=True,
            timeout=300,
        )  # fmt: skip
    return target


def run_with_plugins(
    site: Path, code: str, *args: str, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run ``code`` (dedented) with ``args`` in a child process that sees ``site``; the
    child must exit 0 and print JSON on its last line, which is returned."""
    ours = Path(langchain_setraf.__file__).resolve().parents[1]
    extra = dict(env or {})
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ours)]), **extra}
    if "SETRAF_PLUGINS" not in extra:
        full.pop("SETRAF_PLUGINS", None)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
