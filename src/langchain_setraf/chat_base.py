"""``LocalChatModel``: the base of the chat models drawing their model from the shared cache.

Public for plugin authors (``from langchain_setraf import LocalChatModel``): a subclass
supplies ``_backend_and_spec()`` (its backend and load spec: the leased handle renders the
chat template and generates, honouring a JSON constraint), ``_sampling_params(overrides)``
(its sampling settings and a call's overrides, in the backend's own names),
``_model_name()`` and LangChain's ``_llm_type``. Tools, structured output, usage metadata,
streaming, async, ``timeout``, ``max_retries`` and ``keep_alive`` are done here once.
``ChatGGUF`` and ``ChatTransformers`` are its subclasses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams, LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

from langchain_setraf._cached import CachedModelMixin, merge_stops
from langchain_setraf._tools import (
    call_schema,
    close_objects,
    format_tool_choice,
    messages_for_template,
    parse_tool_calls,
    tools_system_prompt,
)
from langchain_setraf.async_iter import aiter_in_thread
from langchain_setraf.backends.base import GenerationRequest, GenerationStats, JSONConstraint
from langchain_setraf.schema_limits import check_schema

__all__ = ["JSONConstraint", "LocalChatModel"]

_CALL_KWARGS = ("tools", "tool_choice", "response_format")


class LocalChatModel(CachedModelMixin, BaseChatModel):
    """Base class of the local chat models (not instantiated directly)."""

    temperature: float = 0.8
    max_tokens: int = 256
    """Most tokens to generate."""
    top_p: float = 0.95
    top_k: int = 40
    stop: list[str] | None = None
    """Stop sequences (merged with those passed per call)."""
    seed: int | None = None
    streaming: bool = False
    """Stream internally on ``invoke`` so callbacks get ``on_llm_new_token``."""

    # -- backend hooks ------------------------------------------------------------------------
    def _sampling_params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """This object's sampling settings and a call's overrides, in the backend's names."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _run(
        self,
        dicts: list[dict[str, str]],
        *,
        stop: list[str] | None,
        constraint: JSONConstraint,
        overrides: dict[str, Any],
        stats: GenerationStats,
    ) -> Iterator[str]:
        request = GenerationRequest(
            params=self._sampling_params(overrides),
            stop=merge_stops(self.stop, stop),
            constraint=constraint,
        )
        it = self._generate_pieces(request, lambda h, r: h.chat(dicts, r, stats))
        try:
            yield from it
        finally:
            it.close()

    def _model_name(self) -> str:
        raise NotImplementedError  # pragma: no cover - abstract

    # -- token counting (metadata only: never loads the weights) ----------------------------------
    def get_num_tokens_from_messages(
        self,
        messages: list[BaseMessage],
        tools: Sequence[Any] | None = None,
    ) -> int:
        """Tokens of the prompt these messages become: the model's own chat template, its
        special tokens and, with ``tools``, their description, counted by the model's own
        tokenizer. Reads the tokenizer only: never loads the weights."""
        system_extra = None
        if tools:
            system_extra = tools_system_prompt([convert_to_openai_tool(t) for t in tools], None)
        prompt = self._render(messages_for_template(messages, system_extra))
        return len(self.prompt_token_ids(prompt))

    # -- LangChain metadata ---------------------------------------------------------------------
    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="setraf",
            ls_model_name=str(kwargs.get("model") or self._model_name()),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        stops = merge_stops(self.stop, stop)
        if stops:
            params["ls_stop"] = stops
        return params

    # -- tools and structured output ------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; ``tool_choice`` ``"auto"`` (default), ``"any"``/``"required"``, a tool's
        name, or ``"none"``. A required call is grammar-constrained, so it always parses."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        choice = format_tool_choice(tool_choice, formatted)
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Structured output, decoded under a JSON-schema constraint.

        Args:
            schema: A pydantic class, a TypedDict, or a JSON schema (``None`` only with
                ``json_mode``).
            method: ``"json_schema"`` (the answer is the object), ``"function_calling"``
                (the answer is a forced call of a tool named after the schema) or
                ``"json_mode"`` (any JSON object; describe the shape in the prompt).
            include_raw: Also return the raw message and any parsing error.
            strict: Validate the result against the schema and raise if it does not fit
                (the constraint makes that rare); for pydantic schemas validation always
                happens.
        """
        if kwargs:
            raise ValueError(f"unexpected arguments: {sorted(kwargs)}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        if schema is None and method != "json_mode":
            raise ValueError(f"method={method!r} needs a schema")
        fmt_schema = convert_to_json_schema(schema) if schema is not None else None
        ls_format = {"kwargs": {"method": method, "strict": strict}, "schema": fmt_schema}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            tool = convert_to_openai_tool(schema, strict=strict)  # type: ignore[arg-type]
            name = tool["function"]["name"]
            llm = self.bind_tools([tool], tool_choice=name, ls_structured_output_format=ls_format)
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        elif method in ("json_schema", "json_mode"):
            json_schema = None
            if method == "json_schema":
                json_schema = convert_to_openai_tool(schema)["function"]["parameters"]  # type: ignore[arg-type]
            llm = self.bind(
                response_format={"type": method, "schema": json_schema},
                ls_structured_output_format=ls_format,
            )
            if is_pydantic:
                parser = PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
            else:
                parser = JsonOutputParser()
                if strict and json_schema is not None:
                    parser = parser | _validator(json_schema)
        else:
            raise ValueError(
                f"unknown method {method!r}; expected json_schema, function_calling or json_mode"
            )
        if not include_raw:
            return llm | parser
        parser_assign = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
        parser_with_fallback = parser_assign.with_fallbacks(
            [parser_none], exception_key="parsing_error"
        )
        return RunnableMap(raw=llm) | parser_with_fallback

    # -- generation -----------------------------------------------------------------------------
    def _plan(
        self, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> tuple[list[dict[str, str]], JSONConstraint, list[str], dict[str, Any]]:
        """Messages for the template, JSON constraint, bound tool names and remaining
        sampling overrides."""
        tools = kwargs.pop("tools", None) or []
        choice = kwargs.pop("tool_choice", None)
        response_format = kwargs.pop("response_format", None)
        if choice is not None and not isinstance(choice, str):
            choice = format_tool_choice(choice, tools)
        constraint: JSONConstraint = None
        system_extra = last_extra = None
        names: list[str] = []
        if tools and choice != "none":
            names = [t["function"]["name"] for t in tools]
            system_extra = tools_system_prompt(tools, choice)
            if choice not in (None, "auto"):
                constraint = {"schema": call_schema(tools, choice)}
        elif response_format:
            kind = response_format.get("type")
            schema = response_format.get("schema")
            if kind == "json_schema" and isinstance(schema, Mapping):
                constraint = {"schema": close_objects(dict(schema))}
                # the schema changes from call to call: last, after every fixed instruction
                last_extra = (
                    "Answer with only a JSON object that follows this JSON schema:\n"
                    + json.dumps(schema, ensure_ascii=False)
                )
            elif kind in ("json_mode", "json_object"):
                constraint = {"schema": None}
                system_extra = "Answer with only a JSON object."
            else:
                raise ValueError(f"unsupported response_format: {response_format!r}")
        if constraint is not None and constraint["schema"] is not None:
            # before any grammar is built: a hostile schema costs nothing but this walk
            check_schema(constraint["schema"], what="tool-call schema" if names else "JSON schema")
        dicts = messages_for_template(messages, system_extra, last_extra=last_extra)
        return dicts, constraint, names, kwargs

    def _message(
        self, text: str, names: list[str], constraint: JSONConstraint, stats: GenerationStats
    ) -> AIMessage:
        calls = parse_tool_calls(text, names) if names else []
        usage = UsageMetadata(
            input_tokens=stats.prompt_tokens,
            output_tokens=stats.completion_tokens,
            total_tokens=stats.prompt_tokens + stats.completion_tokens,
        )
        if stats.cached_tokens is not None:  # the server's prompt cache: LangChain's name
            usage["input_token_details"] = {"cache_read": stats.cached_tokens}
        meta = {
            "model_name": stats.model or self._model_name(),
            "finish_reason": stats.finish_reason,
        }
        if stats.served_by is not None:
            meta["served_by"] = stats.served_by
        if calls:
            meta["finish_reason"] = "tool_calls"
            return AIMessage(
                content="", tool_calls=calls, usage_metadata=usage, response_metadata=meta
            )
        if names and constraint is not None:
            # a required call was decoded under its grammar: if it does not parse, it was
            # cut off (max_tokens) or the engine failed; say so instead of returning nothing
            why = (
                f"the required tool call was cut off at max_tokens ({stats.completion_tokens} "
                "tokens): raise max_tokens"
                if stats.finish_reason == "length"
                else "the required tool call is not valid JSON for any bound tool"
            )
            return AIMessage(
                content="",
                invalid_tool_calls=[
                    {
                        "type": "invalid_tool_call",
                        "name": None,
                        "args": text,
                        "id": None,
                        "error": why,
                    }
                ],
                usage_metadata=usage,
                response_metadata=meta,
            )
        return AIMessage(content=text, usage_metadata=usage, response_metadata=meta)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        dicts, constraint, names, overrides = self._plan(messages, dict(kwargs))
        stats = GenerationStats()
        text = "".join(
            self._run(dicts, stop=stop, constraint=constraint, overrides=overrides, stats=stats)
        )
        return ChatResult(
            generations=[ChatGeneration(message=self._message(text, names, constraint, stats))]
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        dicts, constraint, names, overrides = self._plan(messages, dict(kwargs))
        stats = GenerationStats()
        if names:
            # a tool call is only known once complete: generate, then emit one chunk
            text = "".join(
                self._run(dicts, stop=stop, constraint=constraint, overrides=overrides, stats=stats)
            )
            msg = self._message(text, names, constraint, stats)
            chunk = AIMessageChunk(
                content=msg.content,
                tool_call_chunks=[
                    {
                        "name": c["name"],
                        "args": json.dumps(c["args"], ensure_ascii=False),
                        "id": c["id"],
                        "index": i,
                        "type": "tool_call_chunk",
                    }
                    for i, c in enumerate(msg.tool_calls)
                ],
                # kept whole: as a chunk, LangChain's lenient partial-JSON parse would turn
                # the cut-off text into an empty call
                invalid_tool_calls=msg.invalid_tool_calls,
                usage_metadata=msg.usage_metadata,
                response_metadata=msg.response_metadata,
                chunk_position="last",
            )
            if run_manager is not None and isinstance(msg.content, str) and msg.content:
                run_manager.on_llm_new_token(msg.content)
            yield ChatGenerationChunk(message=chunk)
            return
        it = self._run(dicts, stop=stop, constraint=constraint, overrides=overrides, stats=stats)
        try:
            for text in it:
                gen = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=gen)
                yield gen
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        final = self._message("", [], constraint, stats)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=final.usage_metadata,
                response_metadata=final.response_metadata,
                chunk_position="last",
            )
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        final: ChatGenerationChunk | None = None
        async for chunk in self._astream(messages, stop, None, **kwargs):
            final = chunk if final is None else final + chunk
        assert final is not None
        msg = final.message
        out = AIMessage(
            content=msg.content,
            tool_calls=getattr(msg, "tool_calls", []),
            usage_metadata=getattr(msg, "usage_metadata", None),
            response_metadata=msg.response_metadata,
            id=msg.id,
        )
        return ChatResult(generations=[ChatGeneration(message=out)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        agen = aiter_in_thread(lambda: self._stream(messages, stop, None, **kwargs))
        try:
            async for chunk in agen:
                if run_manager is not None and chunk.text:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            await agen.aclose()


def _validator(schema: dict[str, Any]) -> Callable[[Any], Any]:
    required = list(schema.get("required", []))
    props = set((schema.get("properties") or {}).keys())

    def check(obj: Any) -> Any:
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in required if k not in obj]
        extra = [k for k in obj if props and k not in props]
        if missing or extra:
            raise ValueError(f"output does not fit the schema: missing {missing}, extra {extra}")
        return obj

    return check
