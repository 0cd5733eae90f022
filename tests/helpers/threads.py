"""Run a call in a daemon thread and keep its result or exception (tests of concurrency)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``fn`` in a daemon thread; the dict gets ``value`` or ``error`` when it ends."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out
