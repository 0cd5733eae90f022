"""Chat models over the shared cache: ``ChatGGUF`` (llama.cpp) and ``ChatTransformers``.

Each shares its loaded weights with the matching ``LLM`` class: a ``GGUFLLM`` and a
``ChatGGUF`` on the same file and load options are one cache entry, one load.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from langchain_setraf._cached import check_overrides, merge_stops
from langchain_setraf._chat_base import JSONConstraint, LocalChatModel
from langchain_setraf._hf_generate import GenerationStats, hf_generate_kwargs, hf_generate_stream
from langchain_setraf._load_options import GGUFLoadOptions, TransformersLoadOptions
from langchain_setraf._vocabulary import prompt_tokens
from langchain_setraf.backends.base import LoadSpec
from langchain_setraf.backends.gguf import GGUFBackend, import_llama_cpp
from langchain_setraf.backends.transformers import TransformersBackend
from langchain_setraf.chat_template import render_gguf_prompt, render_prompt

__all__ = ["ChatGGUF", "ChatTransformers"]

_GGUF_OVERRIDES = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
)
_HF_OVERRIDES = ("temperature", "top_p", "top_k", "max_tokens", "repetition_penalty", "seed")


# -- GGUF ----------------------------------------------------------------------------------------
#: JSON's string character rule: no raw control characters (llama-cpp-python's converter
#: allows them, which lets a small model write a newline inside a string: invalid JSON).
_JSON_CHAR = (
    r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F] [0-9a-fA-F])"
)


@lru_cache(maxsize=64)
def _json_grammar_cached(schema_json: str | None) -> str:
    llama_grammar = importlib.import_module("llama_cpp.llama_grammar")
    if schema_json is None:
        return str(llama_grammar.JSON_GBNF)
    gbnf = str(llama_grammar.json_schema_to_gbnf(schema_json))
    lines = [_JSON_CHAR if ln.startswith("char ::=") else ln for ln in gbnf.splitlines()]
    return "\n".join(lines)


def json_grammar(schema: dict[str, Any] | None) -> str:
    """GBNF grammar for JSON fitting ``schema`` (any JSON object when ``None``).

    Properties are generated in the schema's order (not sorted): the order is part of the
    request, e.g. a material before its alternative.
    """
    return _json_grammar_cached(None if schema is None else json.dumps(schema))


class ChatGGUF(GGUFLoadOptions, LocalChatModel):
    """A GGUF chat model run by llama-cpp-python, sharing weights with ``GGUFLLM``.

    Prompts are rendered with the model's own chat template (from the GGUF metadata) in a
    sandboxed Jinja environment. Tool calls and structured output are decoded under a
    GBNF grammar built from the JSON schema by llama.cpp, so even a 135M model returns
    valid JSON. Without ``model_path`` the embedded SmolLM2-135M-Instruct is used.

    Example:
        .. code-block:: python

            from pydantic import BaseModel
            from langchain_setraf import ChatGGUF

            chat = ChatGGUF(temperature=0, max_tokens=64)
            print(chat.invoke("Name one rock that conducts electricity well.").content)

            class Layer(BaseModel):
                material: str
                resistivity_ohm_m: float

            print(chat.with_structured_output(Layer).invoke("Clay at 20 ohm-m."))
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    min_p: float = 0.05
    """Drop tokens less likely than ``min_p`` × the most likely one (llama.cpp's default)."""
    repeat_penalty: float = 1.1
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra ``create_completion`` keyword arguments (e.g. ``presence_penalty``)."""

    @property
    def _llm_type(self) -> str:
        return "setraf-chat-gguf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Everything that can change an answer: LangChain's ``set_llm_cache`` keys on it."""
        # "stop" itself is overwritten by LangChain with the call's own stop sequences
        return {
            **self._gguf_identity(),
            **self._sampling_params({}),
            "stop_sequences": self.stop,
        }

    def _sampling_params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        check_overrides("ChatGGUF", overrides, _GGUF_OVERRIDES)
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "max_tokens": self.max_tokens,
            "repeat_penalty": self.repeat_penalty,
            **self.model_kwargs,
            **overrides,
        }
        if self.seed is not None:
            params.setdefault("seed", self.seed)
        return params

    def _backend_and_spec(self) -> tuple[GGUFBackend, LoadSpec]:
        return self._gguf_backend_and_spec()

    def _model_name(self) -> str:
        return self.resolved_model_path().name

    def _render(self, dicts: list[dict[str, str]]) -> str:
        return render_gguf_prompt(self.resolved_model_path(), dicts)

    def _run(
        self,
        prompt: str,
        *,
        stop: list[str] | None,
        constraint: JSONConstraint,
        overrides: dict[str, Any],
        stats: GenerationStats,
    ) -> Iterator[str]:
        params = self._sampling_params(overrides)
        grammar = None
        if constraint is not None:
            llama_cpp = import_llama_cpp()
            grammar = llama_cpp.LlamaGrammar.from_string(
                json_grammar(constraint.get("schema")), verbose=False
            )
        with self._lease() as handle:
            llama = handle.llama
            tokens = prompt_tokens(llama, prompt)
            stream = llama.create_completion(
                tokens or prompt,
                stream=True,
                stop=merge_stops(self.stop, stop),
                grammar=grammar,
                **params,
            )
            parts: list[str] = []
            try:
                for part in stream:
                    choice = part["choices"][0]
                    stats.finish_reason = choice.get("finish_reason") or stats.finish_reason
                    if choice["text"]:
                        parts.append(choice["text"])
                        yield choice["text"]
            finally:
                stream.close()
            stats.prompt_tokens = len(tokens)
            stats.completion_tokens = len(
                llama.tokenize("".join(parts).encode("utf-8"), add_bos=False, special=True)
            )


# -- transformers ------------------------------------------------------------------------------
class ChatTransformers(TransformersLoadOptions, LocalChatModel):
    """A transformers chat model, sharing weights with ``TransformersLLM``.

    Prompts use the tokenizer's own chat template, rendered in a sandboxed Jinja
    environment (never transformers' unsandboxed ``apply_chat_template``). Tool calls and
    structured output are constrained with llguidance (a token mask computed from the JSON
    schema by the engine llama.cpp, vLLM and SGLang use).

    Example:
        .. code-block:: python

            from langchain_setraf import ChatTransformers

            chat = ChatTransformers(model="/models/SmolLM2-135M-Instruct",
                                    quantization="bf16", temperature=0, max_tokens=48)
            for chunk in chat.stream("What is a Wenner array?"):
                print(chunk.content, end="", flush=True)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    repetition_penalty: float = 1.1

    @property
    def _llm_type(self) -> str:
        return "setraf-chat-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Everything that can change an answer: LangChain's ``set_llm_cache`` keys on it."""
        return {
            "model": self.model,
            "revision": self.revision,
            "quantization": self.quantization,
            "double_quant": self.double_quant,
            "compute_dtype": self.compute_dtype,
            "cpu_repack": self.cpu_repack,
            "device_map": self.device_map,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_tokens": self.max_tokens,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
            # "stop" itself is overwritten by LangChain with the call's own stop sequences
            "stop_sequences": self.stop,
        }

    def _backend_and_spec(self) -> tuple[TransformersBackend, LoadSpec]:
        return self._hf_backend_and_spec()

    def _model_name(self) -> str:
        return Path(self.model).name

    def _render(self, dicts: list[dict[str, str]]) -> str:
        tok = self._tokenizer()  # the tokenizer alone: rendering never loads the weights
        return render_prompt(tok.chat_template, dicts, bos=tok.bos_token, eos=tok.eos_token)

    def _run(
        self,
        prompt: str,
        *,
        stop: list[str] | None,
        constraint: JSONConstraint,
        overrides: dict[str, Any],
        stats: GenerationStats,
    ) -> Iterator[str]:
        check_overrides("ChatTransformers", overrides, _HF_OVERRIDES)
        p = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_tokens": self.max_tokens,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
            **overrides,
        }
        params = hf_generate_kwargs({**p, "max_new_tokens": p["max_tokens"], "do_sample": None}, {})
        with self._lease() as handle:
            if constraint is not None:
                params["logits_processor"] = _json_logits_processor(handle, constraint)
                if constraint.get("schema") is None:
                    # free-form JSON (json_mode): transformers' penalty, applied over the
                    # whole sequence, kept a 135M model nesting objects instead of closing
                    # them. With a schema the structure is bounded and the penalty keeps
                    # strings from looping, so it stays (measured both ways).
                    params["repetition_penalty"] = 1.0
            if p["seed"] is not None:
                importlib.import_module("transformers").set_seed(int(p["seed"]))
            yield from hf_generate_stream(
                handle.model,
                handle.tokenizer,
                prompt,
                params=params,
                stop=merge_stops(self.stop, stop),
                stats=stats,
                add_special_tokens=False,
            )


def _json_logits_processor(handle: Any, constraint: dict[str, Any]) -> Any:
    """A ``LogitsProcessor`` that masks every token that would break JSON fitting the schema.

    Uses llguidance (Microsoft's Rust constrained-decoding engine, the one llama.cpp,
    vLLM and SGLang use): exact JSON-schema support, a token mask in microseconds on the
    CPU, and a plain ``torch`` API. lm-format-enforcer was tried first: its transformers
    adapter does not import under transformers 5 and its schema-less JSON mode lets a
    trailing comma through.
    """
    try:
        llg = importlib.import_module("llguidance")
        llg_hf = importlib.import_module("llguidance.hf")
        llg_torch = importlib.import_module("llguidance.torch")
    except ImportError as exc:
        raise ImportError(
            "structured output and tool calls with ChatTransformers need llguidance: "
            f"pip install 'langchain-setraf[transformers]' ({exc})"
        ) from exc
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    n_vocab = int(handle.model.config.vocab_size)
    ll_tok = getattr(handle, "llg_tokenizer", None)
    if ll_tok is None:  # built once per loaded model (~1 s)
        ll_tok = llg_hf.from_tokenizer(handle.tokenizer, n_vocab=n_vocab)
        handle.llg_tokenizer = ll_tok
    schema = constraint.get("schema") or {"type": "object"}
    # bounded whitespace (as llama.cpp's grammar does): the model may pretty-print, as it
    # was trained to, but cannot pad an empty object with blanks until max_tokens
    grammar = llg.LLMatcher.grammar_from_json_schema(
        json.dumps(schema),
        defaults={"whitespace_flexible": True, "whitespace_pattern": r"[ \n]{0,12}"},
    )
    matcher = llg.LLMatcher(ll_tok, grammar, log_level=0)
    if matcher.is_error():
        raise ValueError(
            f"JSON schema not supported for constrained decoding: {matcher.get_error()}"
        )
    bitmask = llg_torch.allocate_token_bitmask(1, n_vocab)
    eos = handle.tokenizer.eos_token_id
    base: Any = transformers.LogitsProcessor

    class _JSONOnly(base):  # type: ignore[misc]
        def __init__(self) -> None:
            self.prompt_len: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.prompt_len is None:
                self.prompt_len = int(input_ids.shape[1])
            else:
                matcher.consume_token(int(input_ids[0, -1]))
            if matcher.is_stopped() or matcher.is_error():
                forced = torch.full_like(scores, float("-inf"))
                forced[:, eos] = 0.0
                return forced
            llg_torch.fill_next_token_bitmask(matcher, bitmask, 0)
            llg_torch.apply_token_bitmask_inplace(scores, bitmask.to(scores.device))
            return scores

    return transformers.LogitsProcessorList([_JSONOnly()])
