"""Fit a GGUF model's context, KV cache type and slots to the memory left (issue 23).

When the weights fit but the asked context does not, :func:`fit_options` finds the best
configuration that does, in this order of preference: the largest context up to the asked
one; at that context, the asked KV cache type, then smaller ones (``q8_0``, then
``q4_0``); then fewer slots (a managed server's ``n_parallel``). It never goes below a
floor context. The cost of each candidate is the backend's own estimate, so what fits
here is what the cache admits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from langchain_setraf.backends.options import KV_CACHE_TYPES, GGUFOptions, LlamaServerOptions
from langchain_setraf.memory import format_bytes

__all__ = ["CONTEXT_STEP", "FitDecision", "candidates", "describe_config", "fit_options"]

#: Contexts tried below the asked one are multiples of this many tokens.
CONTEXT_STEP = 256

_G = TypeVar("_G", bound=GGUFOptions)


@dataclass(frozen=True)
class FitDecision:
    """What a fit chose.

    Attributes:
        asked: The options asked for.
        chosen: The options that fit (``asked`` when it fits as it is).
        need: Estimated bytes of ``chosen``.
        asked_need: Estimated bytes of ``asked``.
        room: Bytes that were left for the load.
    """

    asked: GGUFOptions
    chosen: GGUFOptions
    need: int
    asked_need: int
    room: int

    @property
    def changed(self) -> bool:
        """Whether the chosen configuration differs from the asked one."""
        return self.chosen != self.asked

    def describe(self) -> str:
        """``n_ctx=2816 with type_k=q8_0, type_v=q8_0 fits in 1.2 GB of the 1.4 GB left``."""
        return (
            f"{describe_config(self.chosen)} fits in {format_bytes(self.need)} of the "
            f"{format_bytes(self.room)} left"
        )


def describe_config(options: GGUFOptions) -> str:
    """``n_ctx=…, with type_k=…, type_v=…`` (and ``n_parallel=…`` for a server)."""
    text = f"n_ctx={options.n_ctx} with type_k={options.type_k}, type_v={options.type_v}"
    if isinstance(options, LlamaServerOptions):
        text += f", n_parallel={options.n_parallel}"
    return text


def _kv_choices(asked: GGUFOptions) -> list[tuple[str, str]]:
    """The asked KV types, then each smaller type for both (V only where flash attention
    may be on)."""
    rank = {t: i for i, t in enumerate(KV_CACHE_TYPES)}
    out: list[tuple[str, str]] = [(asked.type_k, asked.type_v)]
    for kv in KV_CACHE_TYPES:
        k = kv if rank[kv] > rank[asked.type_k] else asked.type_k
        v = kv if rank[kv] > rank[asked.type_v] and asked.flash_attn is not False else asked.type_v
        if (k, v) not in out:
            out.append((k, v))
    return out


def candidates(asked: _G, floor: int) -> Iterator[_G]:
    """Configurations in the order of preference (see the module's docstring)."""
    floor = min(floor, asked.n_ctx)
    contexts = [asked.n_ctx]
    top = (asked.n_ctx - 1) // CONTEXT_STEP * CONTEXT_STEP
    contexts += [c for c in range(top, floor - 1, -CONTEXT_STEP) if c >= floor]
    if contexts[-1] != floor:
        contexts.append(floor)
    slots = range(asked.n_parallel, 0, -1) if isinstance(asked, LlamaServerOptions) else [None]
    kvs = _kv_choices(asked)
    for n_ctx in contexts:
        for n_parallel in slots:
            for type_k, type_v in kvs:
                changes: dict[str, object] = {"n_ctx": n_ctx, "type_k": type_k, "type_v": type_v}
                if n_parallel is not None:
                    changes["n_parallel"] = n_parallel
                yield dataclasses.replace(asked, **changes)  # type: ignore[arg-type]


def fit_options(
    asked: _G, cost: Callable[[_G], int], room: int, *, floor: int
) -> FitDecision | None:
    """The best configuration whose ``cost`` is at most ``room`` (``None``: not even the
    floor context with the smallest KV cache and one slot fits)."""
    asked_need = cost(asked)
    for option in candidates(asked, floor):
        need = asked_need if option == asked else cost(option)
        if need <= room:
            return FitDecision(asked, option, need, asked_need, room)
    return None
