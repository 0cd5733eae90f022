"""The generation plumbing shared by every ``LLM`` class drawing its model from the cache.

Subclasses say which backend and load spec they use and turn their fields and a call's
arguments into a :class:`~langchain_setraf.backends.base.GenerationRequest`; the leased
handle generates. Batching, ``streaming=True``, async (run in one worker thread, never
blocking the loop) and token usage totals are done here once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.llms import LLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult

from langchain_setraf._async import aiter_in_thread
from langchain_setraf._cached import CachedModelMixin
from langchain_setraf.backends.base import GenerationRequest, GenerationStats

__all__ = ["CachedLLM"]


class CachedLLM(CachedModelMixin, LLM):
    """Base class: an ``LLM`` whose weights live in the shared model cache."""

    streaming: bool = False
    """Stream internally on ``invoke`` so callbacks get ``on_llm_new_token``."""
    keep_alive: float | None = None
    """Release the model after this many idle seconds (``0``: after each call; ``None``:
    the cache's default, which keeps it). Like Ollama's ``keep_alive``, and with its rule
    for a model shared by several objects: the last call to finish sets the expiry."""

    def _generation_request(
        self, stop: list[str] | None, overrides: dict[str, Any]
    ) -> GenerationRequest:
        """This object's settings and a call's overrides, in the backend's own names."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _model_name(self) -> str:
        raise NotImplementedError  # pragma: no cover - abstract

    def _info(self, stats: GenerationStats) -> dict[str, Any]:
        info: dict[str, Any] = {
            "finish_reason": stats.finish_reason,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            "model": stats.model or self._model_name(),
        }
        if stats.served_by is not None:
            info["served_by"] = stats.served_by
        return info

    def _complete(self, prompt: str, stop: list[str] | None, **kwargs: Any) -> Generation:
        final: GenerationChunk | None = None
        for chunk in self._stream(prompt, stop, None, **kwargs):
            final = chunk if final is None else final + chunk
        return final or GenerationChunk(text="")

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        request = self._generation_request(stop, kwargs)
        stats = GenerationStats()
        it = self._generate_pieces(request, lambda h, r: h.generate(prompt, r, stats))
        try:
            for text in it:
                chunk = GenerationChunk(text=text)
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        finally:
            it.close()
        yield GenerationChunk(text="", generation_info=self._info(stats))

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
