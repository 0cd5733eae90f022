"""Benchmark fixtures: the real SmolLM2 models, results gathered across the session."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(scope="session")
def checkpoint() -> str:
    from helpers.checkpoint import build_checkpoint
    from langchain_setraf.models import default_gguf_path

    return str(build_checkpoint(default_gguf_path()))


@pytest.fixture(scope="session")
def results() -> dict[str, Any]:
    return {}
