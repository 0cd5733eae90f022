"""SETRAF's own LLM functions, rebuilt on the chains (``../shared/docs/setraf-llm-contract.md``).

Drop-in for the SETRAF app: replace ``load_mistral_llm(...)`` with
``as_text_generation_pipeline(GGUFLLM())`` and keep calling the same functions. The
known defects are not copied: section parsers do not trip on ``"1.5 m"``, the legend
parser reads only the answer, timeouts really stop generation, and failures raise
instead of returning canned text.

Example:
    >>> from langchain_core.language_models import FakeListLLM
    >>> pipe = as_text_generation_pipeline(FakeListLLM(responses=["Bonjour"]))
    >>> pipe("[INST] Salut [/INST]", return_full_text=False)
    [{'generated_text': 'Bonjour'}]
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable

from langchain_setraf.ert import prompts
from langchain_setraf.ert.chains import (
    _model_step,
    graph_explanation_chain,
    legend_chain,
    parse_sections,
)
from langchain_setraf.ert.classify import setraf_class

__all__ = [
    "GenerationTimeoutError",
    "TextGenerationPipeline",
    "analyze_data_with_mistral",
    "as_text_generation_pipeline",
    "generate_dynamic_legend_and_explanation",
    "generate_graph_explanation_with_llm",
    "generate_text_with_streaming",
]

ProgressCallback = Callable[[str, float], None]

_SYNONYMS = {
    "max_new_tokens": ("max_new_tokens", "max_tokens", "num_predict"),
    "repetition_penalty": ("repetition_penalty", "repeat_penalty"),
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "top_k": ("top_k",),
}
_INST = re.compile(r"\[INST\](.*?)\[/INST\]", re.S)


class GenerationTimeoutError(TimeoutError):
    """Generation was stopped at the time limit. ``partial`` holds the text so far."""

    def __init__(self, seconds: float, partial: str) -> None:
        super().__init__(f"generation stopped after {seconds:g} s (time limit)")
        self.partial = partial


def _unwrap(llm: Any) -> BaseLanguageModel[Any]:
    if llm is None:
        raise ValueError(
            "no LLM given (SETRAF's loader returned None): load one, e.g. "
            "as_text_generation_pipeline(GGUFLLM())"
        )
    if isinstance(llm, TextGenerationPipeline):
        return llm.llm
    if isinstance(llm, BaseLanguageModel):
        return llm
    raise TypeError(
        f"expected a LangChain model or as_text_generation_pipeline(...), got {type(llm).__name__}"
    )


def _configured(llm: BaseLanguageModel[Any], **params: Any) -> BaseLanguageModel[Any]:
    """Copy of ``llm`` with HF-style generation settings mapped onto its own field names."""
    fields = type(llm).model_fields
    update = {}
    for hf_name, value in params.items():
        if value is None:
            continue
        for name in _SYNONYMS.get(hf_name, (hf_name,)):
            if name in fields:
                update[name] = value
                break
    return llm.model_copy(update=update) if update else llm


def _to_prompt(llm: BaseLanguageModel[Any], prompt: str) -> Any:
    """Raw ``[INST] … [/INST]`` prompts become the model's own chat format when it has one."""
    parts = _INST.findall(prompt)
    if not parts:
        return prompt
    messages = [HumanMessage(p.strip()) for p in parts]
    if isinstance(llm, BaseChatModel):
        return messages
    fmt = getattr(llm, "format_chat", None)
    return fmt(messages) if fmt is not None else prompt


def _stream_text(
    runnable: Runnable[Any, Any],
    prompt: Any,
    *,
    timeout: float | None,
    on_token: Callable[[str], None] | None = None,
) -> str:
    """Stream a model or chain to text; stop it (close the stream) at ``timeout`` seconds."""
    start = time.monotonic()
    parts: list[str] = []
    stream = iter(runnable.stream(prompt))
    try:
        for chunk in stream:
            text = chunk if isinstance(chunk, str) else str(getattr(chunk, "content", ""))
            parts.append(text)
            if on_token is not None and text:
                on_token(text)
            if timeout is not None and time.monotonic() - start > timeout:
                raise GenerationTimeoutError(timeout, "".join(parts))
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return "".join(parts)


class _Tokenizer:
    def __init__(self, llm: BaseLanguageModel[Any]) -> None:
        self._llm = llm

    @property
    def eos_token_id(self) -> int | None:
        """The model's end-of-sequence id (SETRAF passes it as ``pad_token_id``)."""
        lease = getattr(self._llm, "_lease", None)
        if lease is None:
            return None
        with lease(lock=False) as handle:
            llama = getattr(handle, "llama", None)
            if llama is not None:
                return int(llama.token_eos())
            tok = getattr(handle, "tokenizer", None)
            return None if tok is None else tok.eos_token_id


class TextGenerationPipeline:
    """A callable with the transformers ``text-generation`` pipeline contract SETRAF uses.

    ``pipe(prompt, max_new_tokens=…, temperature=…, return_full_text=True, …)`` returns
    ``[{"generated_text": …}]``. HF keyword names are mapped onto the model's own
    (``max_new_tokens`` → ``max_tokens``, ``repetition_penalty`` → ``repeat_penalty``),
    ``do_sample=False`` means greedy, ``pad_token_id`` is accepted and ignored.
    """

    def __init__(self, llm: BaseLanguageModel[Any], timeout: float | None = None) -> None:
        self.llm = llm
        self.timeout = timeout
        self.tokenizer = _Tokenizer(llm)

    def __call__(
        self,
        prompt: str,
        *,
        max_new_tokens: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        repetition_penalty: float | None = None,
        num_return_sequences: int = 1,
        pad_token_id: int | None = None,
        return_full_text: bool = True,
        timeout: float | None = None,
        **unknown: Any,
    ) -> list[dict[str, str]]:
        if unknown:
            raise TypeError(f"unsupported text-generation argument(s): {sorted(unknown)}")
        if do_sample is False:
            temperature = 0.0
        model = _configured(
            self.llm,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
        )
        limit = timeout if timeout is not None else self.timeout
        out = []
        for _ in range(max(1, num_return_sequences)):
            text = _stream_text(model, _to_prompt(model, prompt), timeout=limit)
            out.append({"generated_text": (prompt + text) if return_full_text else text})
        return out


def as_text_generation_pipeline(
    llm: BaseLanguageModel[Any], timeout: float | None = None
) -> TextGenerationPipeline:
    """Wrap any LangChain model as SETRAF's ``text-generation`` callable."""
    return TextGenerationPipeline(llm, timeout=timeout)


def _progress(cb: ProgressCallback | None, message: str, fraction: float) -> None:
    if cb is not None:
        cb(message, fraction)


def analyze_data_with_mistral(
    llm: Any,
    geophysical_data: Mapping[str, Any],
    progress_callback: ProgressCallback | None = None,
    *,
    timeout: float = 45.0,
) -> tuple[str, str, str]:
    """SETRAF's interpretation call: ``(interpretation, recommendations, image_prompt)``.

    Raises:
        ValueError: ``llm`` is ``None`` or ``geophysical_data`` lacks ``rho_mean``.
        GenerationTimeoutError: Generation passed ``timeout`` seconds (it is stopped).
    """
    model = _configured(
        _unwrap(llm), max_new_tokens=128, temperature=0.7, top_p=0.85, repetition_penalty=1.15
    )
    if "rho_mean" not in geophysical_data:
        raise ValueError("geophysical_data must contain 'rho_mean' (Ω·m)")
    _progress(progress_callback, "Préparation des données", 0.1)
    pre = setraf_class(float(geophysical_data["rho_mean"]), "fr")
    stats = "\n".join(f"{k}: {v}" for k, v in geophysical_data.items())
    msg = (
        f"Données géophysiques :\n{prompts.as_data(stats)}\nPré-classe : {pre}\n\n"
        "Écris trois sections courtes :\n1. GÉOLOGIE : 2-3 phrases.\n"
        "2. ACTIONS : 2-3 points.\n3. IMAGE / PROMPT IA : une phrase décrivant la coupe."
    )
    messages = [SystemMessage(prompts.SYSTEM["fr"]), HumanMessage(msg)]
    _progress(progress_callback, "Génération de l'interprétation", 0.3)
    text = _stream_text(_model_step(model), messages, timeout=timeout)
    _progress(progress_callback, "Analyse de la réponse", 0.9)
    found = parse_sections(text, ("geology", "actions", "image"))
    interpretation = found.get("geology", "" if found else text).strip()
    result = (interpretation, found.get("actions", "").strip(), found.get("image", "").strip())
    _progress(progress_callback, "Terminé", 1.0)
    return result


def generate_dynamic_legend_and_explanation(
    llm: Any, df: Any, rho_min: float, rho_max: float, section_type: str = "general"
) -> tuple[str, str]:
    """SETRAF's legend call: ``(legend, explanation)`` for a table with a ``data`` column."""
    model = _configured(_unwrap(llm), max_new_tokens=200, temperature=0.7)
    values: Iterable[Any] = df["data"]
    vals = [float(v) for v in values if rho_min <= float(v) <= rho_max]
    result = legend_chain(model, "fr").invoke({"values": vals, "section_type": section_type})
    return result.legend, result.explanation


def generate_graph_explanation_with_llm(
    llm: Any,
    graph_type: str,
    data_stats: str,
    context: str = "",
    use_streaming: bool = True,
    *,
    timeout: float | None = None,
    on_token: Callable[[str], None] | None = None,
) -> str:
    """SETRAF's graph explanation (600 new tokens, temperature 0.7, top_p 0.95)."""
    model = _configured(
        _unwrap(llm), max_new_tokens=600, temperature=0.7, top_p=0.95, repetition_penalty=1.1
    )
    chain = graph_explanation_chain(model, "fr")
    inputs = {"graph_type": graph_type, "data_stats": data_stats, "context": context}
    if not use_streaming:
        return chain.invoke(inputs)
    return _stream_text(chain, inputs, timeout=timeout, on_token=on_token)


def generate_text_with_streaming(
    llm: Any,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.7,
    *,
    on_token: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> str:
    """Stream a raw prompt (``[INST]`` prompts use the model's chat format), return the text."""
    model = _configured(_unwrap(llm), max_new_tokens=max_new_tokens, temperature=temperature)
    return _stream_text(model, _to_prompt(model, prompt), timeout=timeout, on_token=on_token)
