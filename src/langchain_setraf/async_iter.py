"""Run a blocking iterator in one worker thread and consume it from asyncio.

The whole iterator runs in a single thread (so per-model locks are taken and released
by the same thread), the event loop never blocks, and when the async consumer stops early
(``aclose``, ``break``, cancellation) the worker closes the iterator, which stops the
generation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


async def aiter_in_thread(factory: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
    """Yield the items of ``factory()`` computed in a worker thread.

    Exceptions raised by the iterator are re-raised in the consumer.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=64)
    stop = threading.Event()

    def put(item: object) -> None:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while True:
            try:
                fut.result(timeout=0.1)
                return
            except concurrent.futures.TimeoutError:  # not the built-in TimeoutError on 3.10
                if stop.is_set():
                    fut.cancel()
                    return

    def work() -> None:
        it = None
        try:
            it = factory()
            for item in it:
                if stop.is_set():
                    break
                put(item)
                if stop.is_set():
                    break
        except BaseException as exc:
            if not stop.is_set():
                put(_Failure(exc))
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        if not stop.is_set():
            put(_DONE)

    thread = threading.Thread(target=work, name="setraf-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        # drain so a blocked producer can finish; wait for the worker without blocking
        while not queue.empty():
            queue.get_nowait()
        await asyncio.to_thread(thread.join)


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
