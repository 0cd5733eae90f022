"""``TransformersLLM``: a transformers checkpoint (NF4/int8/bf16/…) on the shared cache."""

from __future__ import annotations

import importlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.outputs import Generation, GenerationChunk
from pydantic import ConfigDict, Field

from langchain_setraf._cached import check_overrides, merge_stops
from langchain_setraf._hf_generate import GenerationStats, hf_generate_kwargs, hf_generate_stream
from langchain_setraf._llm_base import CachedLLM
from langchain_setraf._load_options import TransformersLoadOptions
from langchain_setraf.backends.base import LoadSpec
from langchain_setraf.backends.transformers import TransformersBackend

__all__ = ["TransformersLLM"]

#: Sampling options a call may override with ``llm.invoke(prompt, temperature=0, ...)``.
_HF_SAMPLING = (
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "do_sample",
    "seed",
)


class TransformersLLM(TransformersLoadOptions, CachedLLM):
    """A local transformers checkpoint, 4-bit NF4 double-quant by choice, on the shared cache.

    Safe by default: safetensors only (pickled ``.bin`` weights need ``allow_pickle=True``),
    ``trust_remote_code`` off, no network (``local_files_only=True``). The dtype is always
    passed explicitly and checked after loading; for ``nf4``/``fp4``/``int8`` the
    bitsandbytes layers are checked too. One load per checkpoint and load options, shared
    by every object, chain and thread; ``release()`` gives the memory back.

    ``quantization="auto"`` means bf16 on the CPU (measured fastest and smallest there)
    and nf4 on CUDA when bitsandbytes is installed.

    Example:
        .. code-block:: python

            from langchain_setraf import TransformersLLM

            llm = TransformersLLM(model="/models/SmolLM2-135M-Instruct", quantization="bf16",
                                  temperature=0, max_new_tokens=32)
            print(llm.invoke("The capital of France is"))
            for chunk in llm.stream("Resistivity is"):
                print(chunk, end="", flush=True)
            llm.release()
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    max_new_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    repetition_penalty: float = 1.1
    do_sample: bool | None = None
    """``None``: sample when ``temperature > 0``, greedy otherwise."""
    stop: list[str] | None = None
    """Stop sequences, applied to the text (merged with those passed per call)."""
    seed: int | None = None
    """Seed for sampling (sets torch's global RNG under the model's lock)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra ``generate`` keyword arguments."""

    def _backend_and_spec(self) -> tuple[TransformersBackend, LoadSpec]:
        return self._hf_backend_and_spec()

    @property
    def _llm_type(self) -> str:
        return "setraf-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "revision": self.revision,
            "quantization": self.quantization,
            "double_quant": self.double_quant,
            "compute_dtype": self.compute_dtype,
            "cpu_repack": self.cpu_repack,
            "device_map": self.device_map,
            **self._generate_params({}),
            # "stop" itself is overwritten by LangChain with the call's own stop sequences
            "stop_sequences": self.stop,
            "model_kwargs": self.model_kwargs,
        }

    def _generate_params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        check_overrides("TransformersLLM", overrides, _HF_SAMPLING)
        merged: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "do_sample": self.do_sample,
            "seed": self.seed,
            **overrides,
        }
        return merged

    def _iter_text(
        self,
        prompt: str,
        stop: list[str] | None,
        stats: GenerationStats,
        overrides: dict[str, Any],
        *,
        add_special_tokens: bool = True,
    ) -> Generator[str, None, None]:
        p = self._generate_params(overrides)
        gen_kwargs = hf_generate_kwargs(p, self.model_kwargs)
        stops = merge_stops(self.stop, stop)
        with self._lease() as handle:
            if p["seed"] is not None:
                importlib.import_module("transformers").set_seed(int(p["seed"]))
            yield from hf_generate_stream(
                handle.model,
                handle.tokenizer,
                prompt,
                params=gen_kwargs,
                stop=stops,
                stats=stats,
                add_special_tokens=add_special_tokens,
            )

    def _info(self, stats: GenerationStats) -> dict[str, Any]:
        return {
            "finish_reason": stats.finish_reason,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            "model": Path(self.model).name,
        }

    def _complete(self, prompt: str, stop: list[str] | None, **kwargs: Any) -> Generation:
        stats = GenerationStats()
        text = "".join(self._iter_text(prompt, stop, stats, kwargs))
        return Generation(text=text, generation_info=self._info(stats))

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        stats = GenerationStats()
        it = self._iter_text(prompt, stop, stats, kwargs)
        try:
            for text in it:
                chunk = GenerationChunk(text=text)
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        finally:
            it.close()
        yield GenerationChunk(text="", generation_info=self._info(stats))
