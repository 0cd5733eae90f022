"""The transformers backend's quantised KV cache (issue 23): ``kv_cache="fp8"`` runs on
torch alone; ``"quanto"``/``"hqq"`` need their packages and are refused by name when they
are missing; bad bit widths are refused when the object is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from langchain_setraf import ChatTransformers, ModelCache, TransformersLLM
from langchain_setraf.backends.options import TransformersOptions, missing_kv_cache_backend


def test_bad_kv_cache_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="kv_cache must be one of none, fp8, quanto, hqq"):
        TransformersOptions(kv_cache="int3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"kv_cache_nbits applies to kv_cache='quanto' or 'hqq'"):
        TransformersOptions(kv_cache="fp8", kv_cache_nbits=4)
    with pytest.raises(ValueError, match="kv_cache_nbits applies"):
        TransformersOptions(kv_cache_nbits=4)
    assert TransformersOptions().cache_kwargs() == {}
    assert TransformersOptions(kv_cache="fp8").cache_kwargs() == {
        "cache_implementation": "quantized",
        "cache_config": {"backend": "fp8"},
    }


@pytest.mark.parametrize(("backend", "package", "nbits", "bad"), [
    ("quanto", "optimum-quanto>=0.2.5", 2, 8),
    ("hqq", "hqq", 8, 5),
])  # fmt: skip
def test_a_missing_backend_is_refused_naming_the_package(
    hf_checkpoint: Path, backend: str, package: str, nbits: int, bad: int
) -> None:
    """Where the package is missing the object is not built (ImportError naming it and
    the installed alternative); where it is installed the options are accepted."""
    missing = missing_kv_cache_backend(backend)
    if missing is not None:
        assert f"needs {package}, which is not installed: pip install '{package}'" in missing
        assert "installed here: kv_cache='fp8'" in missing
        with pytest.raises(ImportError, match=f"kv_cache='{backend}'.*needs {package}"):
            TransformersLLM(model=str(hf_checkpoint), kv_cache=backend)  # type: ignore[arg-type]
        with pytest.raises(ImportError, match=package):
            ChatTransformers(model=str(hf_checkpoint), kv_cache=backend)  # type: ignore[arg-type]
    else:
        opts = TransformersOptions(kv_cache=backend, kv_cache_nbits=nbits)  # type: ignore[arg-type]
        assert opts.cache_kwargs()["cache_config"] == {"backend": backend, "nbits": nbits}
    with pytest.raises((ValueError, ImportError), match="kv_cache"):
        TransformersOptions(kv_cache=backend, kv_cache_nbits=bad)  # type: ignore[arg-type]


@pytest.mark.slow
def test_an_fp8_kv_cache_generates_through_a_quantized_cache(
    hf_checkpoint: Path, cache: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real SmolLM2 checkpoint with ``kv_cache="fp8"``: ``generate`` gets transformers'
    quantised cache, the answer is text, and the plain model (another cache key) is a
    different load."""
    import transformers

    seen: list[dict[str, Any]] = []
    original = transformers.GenerationMixin.generate

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append({k: kwargs.get(k) for k in ("cache_implementation", "cache_config")})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.GenerationMixin, "generate", spy)
    llm = TransformersLLM(model=str(hf_checkpoint), kv_cache="fp8", temperature=0, max_tokens=8)
    # past transformers' residual length (128 tokens): the cache holds float8 tensors
    text = llm.invoke("The resistivity of wet clay is low. " * 20 + "Granite is")
    assert text.strip()
    assert seen == [{"cache_implementation": "quantized", "cache_config": {"backend": "fp8"}}]
    plain = TransformersLLM(model=str(hf_checkpoint), temperature=0, max_tokens=8)
    assert plain._backend_and_spec() != llm._backend_and_spec()
    llm.release()


@pytest.mark.slow
def test_the_estimate_counts_the_kv_cache_a_call_can_hold(
    hf_checkpoint: Path, cache: ModelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The KV cache is counted as transformers holds it: after a generation on the real
    SmolLM2 checkpoint its DynamicCache's tensors take exactly the counted bytes per token;
    the estimate and the loaded model's split hold ``n_ctx`` tokens (fp8: one byte an
    element; ``None``: the model's positions); a call past ``n_ctx`` is refused."""
    import transformers

    from langchain_setraf import loaded_memory
    from langchain_setraf.backends.transformers.kv_estimate import kv_bytes_per_token

    config = transformers.AutoConfig.from_pretrained(hf_checkpoint)
    per_token = kv_bytes_per_token(config, dtype_bytes=2)  # bf16, the CPU's default
    assert per_token == 30 * 3 * 64 * 2 * 2

    def estimate(**options: Any) -> int:
        return TransformersLLM(model=str(hf_checkpoint), **options).estimate_memory()

    assert estimate(n_ctx=1024) - estimate(n_ctx=512) == 512 * per_token
    assert estimate() - estimate(n_ctx=512) == (config.max_position_embeddings - 512) * per_token
    assert estimate(n_ctx=1024) - estimate(n_ctx=1024, kv_cache="fp8") == 1024 * per_token // 2

    caches: list[Any] = []
    original = transformers.GenerationMixin.generate

    def keep_cache(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **{**kwargs, "return_dict_in_generate": True})
        caches.append(out.past_key_values)
        return out.sequences

    monkeypatch.setattr(transformers.GenerationMixin, "generate", keep_cache)
    llm = TransformersLLM(model=str(hf_checkpoint), n_ctx=512, temperature=0, max_tokens=8)
    assert llm.invoke("The resistivity of wet clay is low. " * 10 + "Granite is").strip()
    [kv] = caches
    held = sum(
        t.numel() * t.element_size() for layer in kv.layers for t in (layer.keys, layer.values)
    )
    assert held == kv.get_seq_length() * per_token > 0
    [memory] = loaded_memory(cache)
    assert memory.estimate.kv_cache == 512 * per_token
    with pytest.raises(ValueError, match=r"and max_tokens=8 exceed n_ctx=512"):
        llm.invoke("Granite is resistive. " * 120)
    llm.release()
