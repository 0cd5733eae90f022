"""The JSON constraint compiled for transformers: an llguidance token mask.

llguidance is Microsoft's Rust constrained-decoding engine, the one llama.cpp, vLLM and
SGLang use: exact JSON-schema support, a token mask in microseconds on the CPU, and a plain
``torch`` API. lm-format-enforcer was tried first: its transformers adapter does not import
under transformers 5 and its schema-less JSON mode lets a trailing comma through.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

__all__ = ["json_logits_processor"]


def json_logits_processor(handle: Any, constraint: dict[str, Any]) -> Any:
    """A ``LogitsProcessorList`` masking every token that would break JSON fitting the
    constraint's schema (any JSON object when it is ``None``).

    ``handle`` is a loaded :class:`~langchain_setraf.backends.transformers.TransformersHandle`;
    its llguidance tokenizer is built once (~1 s) and kept on it.
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
