"""``timeout``, ``max_retries`` and ``keep_alive``: a call's limits and its model's
idle lifetime, declared once for every class.

Every class of this package takes them (``ChatOpenAI`` users bring them, and LangChain's
standard test suites pass them), and each has a meaning wherever the model runs:

- over a server (``server=True``, ``server_url=``): ``timeout`` is the request's
  ``request_timeout`` (its other name; giving both with different values is refused) and
  ``max_retries`` sends the request again when the server cannot be reached or answers
  5xx before the first byte of its answer;
- in this process: ``timeout`` bounds the whole call, the wait for a model busy with
  another generation included (the generation is stopped at the deadline, the model
  released, and :class:`~langchain_setraf.cache.CallTimeoutError` raised) and
  ``max_retries`` retries a call refused with
  :class:`~langchain_setraf.cache.ModelBusyError`, after a short backoff.
"""

from __future__ import annotations

import time

from pydantic import model_validator

from langchain_setraf._arguments import RefuseUnknownArguments

__all__ = ["CallLimits"]


class CallLimits(RefuseUnknownArguments):
    """The fields bounding one call (``timeout``, ``max_retries``) and how long its model
    stays loaded after it (``keep_alive``)."""

    timeout: float | None = None
    """Seconds a call may take (``None``: no limit of its own). Over a server: the
    request's total deadline, another name of ``request_timeout``. In this process: the
    whole call, waiting for a busy model included; the generation is stopped at the
    deadline (checked between tokens; a load of the weights is not cut short) and
    ``CallTimeoutError`` (a ``TimeoutError``) is raised with the model released."""
    max_retries: int = 2
    """Tries after the first. Over a server: when it cannot be reached or answers 5xx
    before the first byte of its answer. In this process: when the model is refused as
    busy (``ModelBusyError``: another generation held it past the cache's
    ``lock_timeout``). A short backoff (0.5 s, doubling, at most 4 s) separates tries,
    within ``timeout``."""
    keep_alive: float | None = None
    """Release the model after this many idle seconds (``0``: after each call; ``None``:
    the cache's default, which keeps it). Like Ollama's ``keep_alive``, and with its rule
    for a model shared by several objects: the last call to finish sets the expiry. With
    the host's shared server (``server=True``) it is the server's idle sleep instead."""

    @model_validator(mode="after")
    def _check_call_limits(self) -> CallLimits:
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {self.timeout!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}")
        return self

    def _call_deadline(self) -> float | None:
        """The ``time.monotonic()`` value a call started now must end by."""
        return None if self.timeout is None else time.monotonic() + self.timeout
