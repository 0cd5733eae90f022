"""Each loaded model's memory split into weights / KV cache / prompt cache / other (issue
23): the estimate, and the buffers llama.cpp reported when it allocated them.
``setraf ps`` on a real managed server is in ``test_server_managed.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_setraf import GGUFLLM, MemorySplit, ModelCache, loaded_memory
from langchain_setraf.backends.gguf.file import read_gguf_header
from langchain_setraf.backends.kv_cache import kv_bytes_per_token
from langchain_setraf.backends.llama_buffers import parse_buffer_lines

MIB = 1 << 20

# what llama.cpp b6xxx logs for SmolLM2-135M Q4_1 at n_ctx 2048 with repacking on
LOG = """\
load_tensors:          AMX model buffer size =    95.34 MiB
load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
llama_context:        CPU  output buffer size =     0.19 MiB
llama_kv_cache:        CPU KV buffer size =    45.00 MiB
sched_reserve:        CPU compute buffer size =    99.38 MiB
"""


def test_buffer_lines_become_a_split_of_host_memory() -> None:
    split = parse_buffer_lines(LOG.splitlines())
    assert split == MemorySplit(
        weights=round((95.34 + 92.10) * MIB),
        kv_cache=45 * MIB,
        prompt_cache=0,
        other=round((0.19 + 99.38) * MIB),
        source="llama.cpp",
    )
    # a GPU's buffers are not host memory
    gpu = LOG + "load_tensors:        CUDA0 model buffer size =   500.00 MiB\n"
    gpu += "llama_kv_cache:      CUDA0 KV buffer size =   100.00 MiB\n"
    assert parse_buffer_lines(gpu.splitlines()) == split
    # a restarted server's log: the last load counts
    again = LOG.replace("45.00", "22.50") + LOG.replace("45.00", "11.25")
    last = parse_buffer_lines(again.splitlines())
    assert last is not None and last.kv_cache == round(11.25 * MIB)
    assert last.weights == split.weights
    assert parse_buffer_lines(["llama_context: n_ctx = 2048", ""]) is None


def test_a_loaded_model_shows_its_split(cache: ModelCache, smollm2_path: Path) -> None:
    """The real SmolLM2 in-process, f16 and q8_0 KV: the estimate's parts add up to the
    budget's figure, llama.cpp's own KV buffer is the estimate's KV cache, and its compute
    buffers, less the logits it reserves but generation never touches, are below the
    estimate's "other"."""
    f16 = GGUFLLM(n_ctx=1024, max_tokens=1)
    q8 = GGUFLLM(n_ctx=1024, max_tokens=1, type_k="q8_0", type_v="q8_0", flash_attn=True)
    f16.load()
    q8.load()
    info = read_gguf_header(smollm2_path)
    by_model = {m.model: m for m in loaded_memory(cache)}
    assert len(by_model) == 2
    for llm, kv_type in ((f16, "f16"), (q8, "q8_0")):
        [loaded] = [m for m in cache.loaded() if m.key == llm._backend_and_spec()[1]]
        memory = by_model[loaded.key.describe()]
        assert memory.estimate == loaded.memory and memory.allocated == loaded.allocated
        assert memory.estimate.total == loaded.estimated_bytes == llm.estimate_memory()
        assert memory.estimate.kv_cache == 1024 * kv_bytes_per_token(
            info, type_k=kv_type, type_v=kv_type
        )
        assert memory.estimate.weights == info.tensor_bytes  # GGUFLLM leaves repacking off
        assert memory.estimate.prompt_cache == 0
        allocated = memory.allocated
        assert allocated is not None and allocated.source == "llama.cpp"
        assert abs(allocated.kv_cache - memory.estimate.kv_cache) < MIB // 100
        assert 0.9 < allocated.weights / memory.estimate.weights <= 1.01
        # llama.cpp's compute + output buffers bound the estimate's "other" (they also
        # reserve 512 rows of logits, which generation never touches: see
        # compute_buffer_bytes)
        vocab = info.metadata["tokenizer.ggml.tokens"].length
        reserved_logits = vocab * 512 * 4
        assert allocated.other - reserved_logits < memory.estimate.other <= allocated.other, (
            kv_type,
            memory.estimate.other,
            allocated.other,
        )
        assert "KV cache" in str(memory) and "allocated" in str(memory)
    f16.release()
    q8.release()
    assert loaded_memory(cache) == []


def test_verbose_output_still_reaches_stderr(
    cache: ModelCache, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collecting llama.cpp's log for the split does not swallow its verbose output."""
    monkeypatch.setenv("SETRAF_LLAMA_VERBOSE", "1")
    llm = GGUFLLM(n_ctx=256, max_tokens=1)
    llm.load()
    try:
        assert "KV buffer size" in capfd.readouterr().err
    finally:
        llm.release()
