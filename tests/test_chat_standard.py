"""LangChain's own standard test suites, run against both chat models and the real models.

Every ``xfail`` is about what a 135M-parameter model can do, never about a missing
feature; each is listed with its reason in docs/usage.md.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_setraf import ChatGGUF, ChatTransformers
from langchain_setraf.models import default_gguf_path


@lru_cache(maxsize=1)
def _checkpoint() -> str:
    from helpers.checkpoint import build_checkpoint

    return str(build_checkpoint(default_gguf_path()))


class _Capabilities:
    # standard_chat_model_params is LangChain's, unmodified: the unit suite's includes
    # api_key="test", which in this process warns (test_standard_parameters_as_given)
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
        return False  # a local model is a file: another model is another object

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[Any]]:
        return {"invoke": [], "stream": []}


class TestChatGGUFUnit(_Capabilities, ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatGGUF

    def test_standard_parameters_as_given(self) -> None:
        params = {**self.standard_chat_model_params, **self.chat_model_params}
        assert params["api_key"] == "test" and params["timeout"] == 60
        for cls, own in ((ChatGGUF, {}), (ChatTransformers, {"model": "/nowhere"})):
            # in this process a key has no use: said, never silently ignored
            with pytest.warns(
                UserWarning, match=rf"^{cls.__name__}: api_key has no use in-process"
            ) as warned:
                model = cls(**{**params, **own})
            assert [w.filename for w in warned] == [__file__]  # the line that built it
            assert model.api_key is not None and model.api_key.get_secret_value() == "test"
            assert "test" not in repr(model).replace("**********", "")
            assert (model.timeout, model.max_retries) == (60, 2)

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"temperature": 0}


class TestChatTransformersUnit(_Capabilities, ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatTransformers

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": _checkpoint(), "quantization": "bf16", "temperature": 0}


#: The only xfails: what a 135M model cannot do. Each is listed in docs/usage.md.
JSON_MODE = (
    "json_mode constrains the answer to *a* JSON object, not to the joke's keys; a 135M model "
    "picks its own keys (e.g. title/description) instead of setup/punchline"
)
AGENT_LOOP = (
    "with tool_choice='auto' a 135M model answers the weather question in prose instead of "
    "deciding to call the tool (tool_choice='any' or a name works: test_tool_choice passes)"
)
UNICODE = (
    "a 135M model does not copy the requested Japanese text into the tool argument (the "
    "call itself is valid and decoded: Unicode round-trips in test_tool_calling)"
)


class _CapabilityXfails:
    @pytest.mark.xfail(reason=JSON_MODE, strict=False)
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)  # type: ignore[misc]

    @pytest.mark.xfail(reason=AGENT_LOOP, strict=False)
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)  # type: ignore[misc]


@pytest.mark.slow
class TestChatGGUFIntegration(_CapabilityXfails, _Capabilities, ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatGGUF

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"temperature": 0, "max_tokens": 96, "seed": 0}


@pytest.mark.slow
class TestChatTransformersIntegration(_CapabilityXfails, _Capabilities, ChatModelIntegrationTests):
    @pytest.mark.xfail(reason=UNICODE, strict=False)
    def test_unicode_tool_call_integration(
        self, model: BaseChatModel, *, tool_choice: str | None = None, force_tool_call: bool = True
    ) -> None:
        super().test_unicode_tool_call_integration(
            model, tool_choice=tool_choice, force_tool_call=force_tool_call
        )

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatTransformers

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": _checkpoint(), "quantization": "bf16", "temperature": 0, "max_tokens": 96}
