"""Generation for transformers models: a worker thread, text-level stops, prompt cut off.

One code path serves ``invoke`` and ``stream``: ``model.generate`` runs in a worker thread
and feeds a ``TextIteratorStreamer``; the caller's thread reads text, applies stop
sequences at text level (holding back a tail that could start a stop sequence) and yields
only new text. An exception in the worker is re-raised to the caller (the streamer is
ended, so nothing hangs); closing the iterator early (a stop sequence, an abandoned or
cancelled stream) sets an event a ``StoppingCriteria`` checks between tokens, so the
generation stops within one decoding step.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_setraf.backends.base import GenerationStats

__all__ = ["GenerationStats", "StopScanner", "hf_generate_kwargs", "hf_generate_stream"]


class StopScanner:
    """Cut streamed text at the first stop sequence, never emitting part of one."""

    def __init__(self, stops: Sequence[str] | None) -> None:
        self.stops = [s for s in (stops or []) if s]
        self._buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add ``text``; return what can be emitted safely now."""
        if self.stopped:
            return ""
        buf = self._buffer + text
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._buffer = ""
            return buf[:cut]
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), 0, -1):
                if buf.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        self._buffer = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        """The held-back tail, once generation ended without a stop sequence."""
        out, self._buffer = self._buffer, ""
        return "" if self.stopped else out


def hf_generate_kwargs(p: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``generate`` keyword arguments from sampling settings.

    ``p`` holds ``max_new_tokens, temperature, top_p, top_k, repetition_penalty`` and
    ``do_sample`` (``None``: sample when ``temperature > 0``). Under greedy decoding the
    sampling options are passed as ``None`` to silence the checkpoint's own defaults.
    """
    do_sample = p["do_sample"] if p["do_sample"] is not None else p["temperature"] > 0
    out: dict[str, Any] = {
        "max_new_tokens": p["max_new_tokens"],
        "do_sample": bool(do_sample),
        "repetition_penalty": p["repetition_penalty"],
    }
    if do_sample:
        out.update(temperature=p["temperature"], top_p=p["top_p"], top_k=p["top_k"])
    else:
        out.update(temperature=None, top_p=None, top_k=None)
    out.update(extra)
    return out


def hf_generate_stream(
    model: Any,
    tokenizer: Any,
    prompt: str,
    *,
    params: dict[str, Any],
    stop: Sequence[str] | None,
    stats: GenerationStats,
    add_special_tokens: bool = True,
) -> Iterator[str]:
    """Yield new text from ``model`` for ``prompt``, stop sequences applied.

    Args:
        model: A loaded ``PreTrainedModel``.
        tokenizer: Its tokenizer.
        prompt: The full prompt text.
        params: ``generate`` keyword arguments (``max_new_tokens``, sampling options).
        stop: Stop sequences, applied to the decoded text.
        stats: Receives token counts and the finish reason.
        add_special_tokens: Passed to the tokenizer (``False`` for chat-rendered prompts
            that already carry their special tokens).
    """
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    criteria_base: Any = transformers.StoppingCriteria

    cancel = threading.Event()

    class _Cancelled(criteria_base):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full(
                (input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device
            )

    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    n_prompt = int(enc["input_ids"].shape[1])
    stats.prompt_tokens = n_prompt
    streamer = transformers.TextIteratorStreamer(
        tokenizer, skip_prompt=True, skip_special_tokens=True
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kwargs = {
        **enc,
        **params,
        "streamer": streamer,
        "stopping_criteria": transformers.StoppingCriteriaList([_Cancelled()]),
        "pad_token_id": pad,
    }
    max_new = int(params.get("max_new_tokens") or 0)

    def work() -> None:
        try:
            with torch.inference_mode():
                out = model.generate(**kwargs)
            stats.completion_tokens = int(out.shape[1]) - n_prompt
        except BaseException as exc:  # reaches the caller below
            stats.errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, name="setraf-generate", daemon=True)
    scanner = StopScanner(stop)
    thread.start()
    try:
        for text in streamer:
            safe = scanner.feed(text)
            if safe:
                yield safe
            if scanner.stopped:
                cancel.set()
                break
        else:
            tail = scanner.flush()
            if tail:
                yield tail
    finally:
        cancel.set()  # an abandoned iterator stops the generation
        thread.join()
    if stats.errors:
        raise stats.errors[0]
    if scanner.stopped:
        stats.finish_reason = "stop"
    elif max_new and stats.completion_tokens >= max_new:
        stats.finish_reason = "length"
    else:
        stats.finish_reason = "stop"
