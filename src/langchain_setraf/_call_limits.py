"""``timeout``, ``max_retries``, ``api_key`` and ``keep_alive``: a call's limits, the
server's key and the model's idle lifetime, declared once for every class.

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
  :class:`~langchain_setraf.cache.ModelBusyError`, after a short backoff;
- ``api_key``: over ``server_url``, the server's bearer key (bound to an origin like the
  key of ``api_key_env``); with the managed server (``server=True``) refused, that server
  makes its own key at each launch; in this process it has no use, and a ``UserWarning``
  naming the class says so. It is a ``SecretStr``: never in a repr, a log or a dump.
"""

from __future__ import annotations

import sys
import time
import warnings

from pydantic import ConfigDict, SecretStr, model_validator

from langchain_setraf._arguments import RefuseUnknownArguments

__all__ = ["CallLimits"]


class CallLimits(RefuseUnknownArguments):
    """The fields bounding one call (``timeout``, ``max_retries``), the server's key
    (``api_key``) and how long its model stays loaded after a call (``keep_alive``)."""

    # a refused construction never quotes its arguments: they may hold the api_key
    model_config = ConfigDict(hide_input_in_errors=True)

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
    api_key: SecretStr | None = None
    """The bearer key of the server this object talks to (LangChain's ``api_key``), held as
    a ``SecretStr``: a repr, a log line, ``model_dump_json()`` or ``dumpd()`` shows
    ``**********``, never the key. Over ``server_url``: sent as ``Authorization: Bearer``
    to that server only, bound like the key of ``api_key_env`` (to the origin in
    ``<api_key_env>_ORIGIN``, else to loopback servers only; another origin is refused
    with ``APIKeyOriginError`` before anything is sent); giving ``api_key_env`` too is
    refused. With ``server=True``: refused (the managed server makes its own random key at
    each launch). In this process no server is reached, so the key has no use: a
    ``UserWarning`` naming the class says so (the object still works)."""
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
        if self.api_key is not None:
            if not self.api_key.get_secret_value():
                raise ValueError("api_key must be a non-empty string (None: no key)")
            if not self._api_key_has_use():
                warnings.warn(
                    f"{type(self).__name__}: api_key has no use in-process: the model runs "
                    "in this process and no server is reached, so the key is sent nowhere "
                    "(it is for server_url=)",
                    UserWarning,
                    stacklevel=_caller_stacklevel(),
                )
        return self

    def _api_key_has_use(self) -> bool:
        """Whether this object reaches a server ``api_key`` could be for (a class that
        attaches to a server says so; in this process: ``False``)."""
        return False

    def _call_deadline(self) -> float | None:
        """The ``time.monotonic()`` value a call started now must end by."""
        return None if self.timeout is None else time.monotonic() + self.timeout


#: Packages between a constructor's caller and a validator of this module.
_CONSTRUCTION_PACKAGES = ("pydantic", "langchain_core", "langchain_setraf")


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised in a validator at the line that
    built the object (past pydantic's, LangChain's and this package's frames)."""
    frame = sys._getframe(2)  # the validator's caller: the validator's stacklevel 2
    level = 2
    while frame.f_back is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith(_CONSTRUCTION_PACKAGES):
            break
        frame = frame.f_back
        level += 1
    return level
