"""``CachedLLM``: the base of every ``LLM`` class drawing its model from the shared cache.

Public for plugin authors (``from langchain_setraf import CachedLLM``): a third-party
backend's LangChain class subclasses it and supplies four hooks: ``_backend_and_spec()``
(which backend, which :class:`~langchain_setraf.backends.base.LoadSpec`),
``_generation_request(stop, overrides)`` (its fields and a call's arguments as a
:class:`~langchain_setraf.backends.base.GenerationRequest`), ``_model_name()`` and
LangChain's ``_llm_type``. The leased handle generates; batching, ``streaming=True``,
async (run in one worker thread, never blocking the loop), token usage, ``timeout``,
``max_retries`` and ``keep_alive`` are done here once. ``chat_model_class`` names the
chat twin :meth:`CachedLLM.as_chat_model` builds.

Example:
    >>> from langchain_setraf import CachedLLM, GGUFLLM
    >>> issubclass(GGUFLLM, CachedLLM)
    True
    >>> GGUFLLM(temperature=0).as_chat_model().temperature
    0.0
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.llms import LLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult

from langchain_setraf._cached import CachedModelMixin
from langchain_setraf.async_iter import aiter_in_thread
from langchain_setraf.backends.base import GenerationRequest, GenerationStats
from langchain_setraf.chat_base import LocalChatModel

__all__ = ["CachedLLM"]


class CachedLLM(CachedModelMixin, LLM):
    """Base class: an ``LLM`` whose weights live in the shared model cache.

    Subclasses implement ``_backend_and_spec``, ``_generation_request``, ``_model_name``
    and ``_llm_type``, and may set :attr:`chat_model_class`. See the module docstring.
    """

    chat_model_class: ClassVar[type[LocalChatModel] | None] = None
    """The chat class that shares this class's model, fields and load options (``None``:
    there is none): what :meth:`as_chat_model` builds."""

    streaming: bool = False
    """Stream internally on ``invoke`` so callbacks get ``on_llm_new_token``."""

    def as_chat_model(self) -> LocalChatModel:
        """The chat model twin of this LLM: same model, load options and sampling settings.

        It is built from the arguments this object was given (the fields set on it, by
        name: the two classes share their names), so its load spec is this object's and
        both use one cache entry (one load, one copy of the weights); its ``timeout``,
        ``max_retries``, ``keep_alive`` and callbacks are this object's too.

        Returns:
            An instance of :attr:`chat_model_class`.

        Raises:
            TypeError: this class has no chat twin (``chat_model_class`` is ``None``).
            ValueError: an argument given to this object has no counterpart in the chat
                class (e.g. ``TransformersLLM(do_sample=False)``); it is named, never
                dropped.
        """
        twin = self.chat_model_class
        if twin is None:
            raise TypeError(
                f"{type(self).__name__} has no chat model twin (its chat_model_class is None)"
            )
        given = set(self.model_fields_set)
        lost = sorted(given - set(twin.model_fields))
        if lost:
            raise ValueError(
                f"{type(self).__name__}.as_chat_model(): {', '.join(lost)} "
                f"{'has' if len(lost) == 1 else 'have'} no counterpart in {twin.__name__}; "
                "build the chat model yourself without them"
            )
        return twin(**{name: getattr(self, name) for name in given})

    def stream_with_usage(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Generator[GenerationChunk, None, None]:
        """Stream the completion of ``prompt`` as chunks, with usage on the last one.

        Unlike LangChain's :meth:`stream` (text only), every chunk is a
        :class:`~langchain_core.outputs.GenerationChunk`; the last has empty text and a
        ``generation_info`` of ``finish_reason``, ``prompt_tokens``,
        ``completion_tokens``, ``total_tokens``, ``model`` (and for a server ``served_by``,
        and ``cached_tokens``, the prompt tokens it took from its cache, when it says).
        LangChain callbacks and its LLM cache are not involved: use :meth:`stream` for them.
        Closing the generator stops the generation.

        Args:
            prompt: The text to complete.
            stop: Stop sequences, merged with this object's.
            **kwargs: Per-call sampling overrides (the names :meth:`invoke` accepts).

        Yields:
            The text pieces as chunks, then the chunk carrying usage.
        """
        it = self._stream(prompt, stop, None, **kwargs)
        try:
            yield from it
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    async def astream_with_usage(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncGenerator[GenerationChunk, None]:
        """Async :meth:`stream_with_usage`: generated in one worker thread, never blocking
        the event loop; ``aclose()`` (or cancelling the consumer) stops the generation.

        Args:
            prompt: The text to complete.
            stop: Stop sequences, merged with this object's.
            **kwargs: Per-call sampling overrides (the names :meth:`ainvoke` accepts).

        Yields:
            The text pieces as chunks, then the chunk carrying usage.
        """
        agen: AsyncGenerator[GenerationChunk, None] = aiter_in_thread(
            lambda: self._stream(prompt, stop, None, **kwargs)
        )
        try:
            async for chunk in agen:
                yield chunk
        finally:
            await agen.aclose()

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
        if stats.cached_tokens is not None:
            info["cached_tokens"] = stats.cached_tokens
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
        agen = self.astream_with_usage(prompt, stop, **kwargs)
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
