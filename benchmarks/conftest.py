"""Benchmark fixtures: the real SmolLM2 models, results gathered across the session."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("benchmark_disable", default=False):
        os.environ["SETRAF_BENCH_QUICK"] = "1"  # smoke: fewer tokens, one timing


@pytest.fixture(scope="session")
def checkpoint() -> str:
    from helpers.checkpoint import build_checkpoint
    from langchain_setraf.models import default_gguf_path

    return str(build_checkpoint(default_gguf_path()))


@pytest.fixture(scope="session")
def results() -> dict[str, Any]:
    return {}
