"""The generation plumbing shared by every ``LLM`` class drawing its model from the cache.

Subclasses implement ``_complete`` (one prompt, no streaming) and ``_stream``; batching,
``streaming=True``, async (run in one worker thread, never blocking the loop) and token
usage totals are done here once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.llms import LLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult

from langchain_setraf._async import aiter_in_thread
from langchain_setraf._cached import CachedModelMixin

__all__ = ["CachedLLM"]


class CachedLLM(CachedModelMixin, LLM):
    """Base class: an ``LLM`` whose weights live in the shared model cache."""

    streaming: bool = False
    """Stream internally on ``invoke`` so callbacks get ``on_llm_new_token``."""
    keep_alive: float | None = None
    """Release the model after this many idle seconds (``0``: after each call; ``None``:
    the cache's default, which keeps it). Like Ollama's ``keep_alive``, and with its rule
    for a model shared by several objects: the last call to finish sets the expiry."""

    def _complete(self, prompt: str, stop: list[str] | None, **kwargs: Any) -> Generation:
        raise NotImplementedError  # pragma: no cover - abstract

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        generations: list[list[Generation]] = []
        for prompt in prompts:
            if self.streaming:
                final: GenerationChunk | None = None
                for chunk in self._stream(prompt, stop, run_manager, **kwargs):
                    final = chunk if final is None else final + chunk
                gen: Generation = final or GenerationChunk(text="")
            else:
                gen = self._complete(prompt, stop, **kwargs)
            generations.append([gen])
        return LLMResult(generations=generations, llm_output=_token_usage(generations))

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        generations: list[list[Generation]] = []
        for prompt in prompts:
            final: GenerationChunk | None = None
            async for chunk in self._astream(prompt, stop, run_manager, **kwargs):
                final = chunk if final is None else final + chunk
            generations.append([final or GenerationChunk(text="")])
        return LLMResult(generations=generations, llm_output=_token_usage(generations))

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        return self._generate([prompt], stop, run_manager, **kwargs).generations[0][0].text

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        agen: AsyncGenerator[GenerationChunk, None] = aiter_in_thread(
            lambda: self._stream(prompt, stop, None, **kwargs)
        )
        try:
            async for chunk in agen:
                if run_manager is not None and chunk.text:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            await agen.aclose()


def _token_usage(generations: list[list[Generation]]) -> dict[str, Any]:
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for gens in generations:
        for g in gens:
            info = g.generation_info or {}
            for k in totals:
                totals[k] += int(info.get(k) or 0)
    return {"token_usage": totals}
