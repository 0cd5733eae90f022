"""Every ``SETRAF_*`` environment variable the package reads, typed and defaulted once.

:func:`get_settings` reads the environment each time it is called (never cached at
import), so a test's ``monkeypatch.setenv`` or a user's ``export`` between two calls is
seen. Each variable has one parser; a bad value raises :class:`SettingsError`, naming the
variable, its value and what was expected. An empty value counts as unset.

:data:`VARIABLES` lists them (name, field, type, default, meaning); the table in
``docs/configuration.md`` is :func:`markdown_table`'s output, checked by a test.

Example:
    >>> from langchain_setraf.settings import get_settings
    >>> get_settings({"SETRAF_LOCK_TIMEOUT": "30"}).lock_timeout
    30.0
    >>> get_settings({}).keep_alive is None
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

import psutil

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_LOCK_TIMEOUT",
    "VARIABLES",
    "Settings",
    "SettingsError",
    "Variable",
    "get_settings",
    "markdown_table",
    "parse_memory",
]

#: Name of the environment variable holding a server's API key when a class leaves
#: ``api_key_env`` unset. The variable itself is read where the key is sent (it is a
#: secret: never a field here); ``<name>_ORIGIN`` binds it to one origin.
DEFAULT_API_KEY_ENV: Final = "SETRAF_API_KEY"

#: Seconds a generation waits for another on the same model (``SETRAF_LOCK_TIMEOUT``'s
#: default); also the backstop for a wait on a model being closed.
DEFAULT_LOCK_TIMEOUT: Final = 600.0

_UNITS: Final = {
    "": 1,
    "B": 1,
    "K": 10**3,
    "KB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "T": 10**12,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """An environment variable holds a value its parser refuses (the message names both)."""


def parse_memory(value: str | int | float | None) -> int | None:
    """Parse a memory amount: bytes, ``"6GB"``, ``"512MiB"``, or ``"50%"`` of total RAM.

    Example:
        >>> parse_memory("1.5GB"), parse_memory("2GiB"), parse_memory(None)
        (1500000000, 2147483648, None)

    Raises:
        ValueError: Not an amount (the message quotes it and gives examples), or a
            percentage outside (0, 100].
    """
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = value.strip().upper().replace(" ", "")
    if text.endswith("%"):
        pct = float(text[:-1])
        if not 0 < pct <= 100:
            raise ValueError(f"memory percentage must be in (0, 100]: {value!r}")
        return int(psutil.virtual_memory().total * pct / 100)
    number = text.rstrip("KMGTIB")
    unit = text[len(number) :]
    try:
        if unit not in _UNITS:
            raise ValueError(unit)
        return int(float(number) * _UNITS[unit])
    except ValueError:
        raise ValueError(f"cannot parse memory amount {value!r} (e.g. 6GB, 512MiB, 50%)") from None


def _seconds(minimum: float, *, strict: bool) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)  # ValueError: reported by the caller with the expectation
        if value != value or (value <= minimum if strict else value < minimum):
            raise ValueError(raw)
        return value

    return parse


def _lock_timeout(raw: str) -> float | None:
    if raw.strip().lower() in ("none", "off", "never"):
        return None
    return _seconds(0.0, strict=True)(raw)


def _bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(raw)


def _log_bytes(raw: str) -> int:
    value = int(raw)
    if value < 4096:
        raise ValueError(raw)
    return value


def _plugins(raw: str) -> frozenset[str] | None:
    text = raw.strip()
    if text.lower() in ("all", "*"):
        return None
    if text.lower() == "none":
        return frozenset()
    return frozenset(p.strip() for p in text.split(",") if p.strip())


def _memory(raw: str) -> int | None:
    value = parse_memory(raw)
    if value is not None and value <= 0:
        raise ValueError(raw)
    return value


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the :class:`Settings` field it fills, how it is
    parsed and what the docs say of it.

    Attributes:
        name: ``SETRAF_…``.
        field: The :class:`Settings` attribute (``""`` for a variable named here but read
            where it is used, e.g. the API key).
        type: What a value must be, in words (used in the error and the docs table).
        default: The default in words; ``""``: the :class:`Settings` field's own default
            (the value is held there only).
        meaning: What it controls.
        parse: From the raw (non-empty) string to the field's value; raises
            ``ValueError`` on a bad value.
    """

    name: str
    field: str
    type: str
    default: str
    meaning: str
    parse: Callable[[str], Any] | None = None


#: Every ``SETRAF_*`` variable, in the order of the docs table.
VARIABLES: Final[tuple[Variable, ...]] = (
    Variable(
        "SETRAF_MODELS_DIR", "models_dir", "a directory path", "`~/.cache/setraf/models`",
        "Where `setraf pull` puts models.", _path,
    ),
    Variable(
        "SETRAF_MAX_MEMORY", "max_memory", "a memory amount (`6GB`, `512MiB`, `50%`)",
        "none (the host's or the cgroup's available memory)",
        "Budget for all models loaded in one process; past it the cache evicts idle models "
        "or refuses the load.", _memory,
    ),
    Variable(
        "SETRAF_KEEP_ALIVE", "keep_alive", "seconds >= 0", "none (kept loaded)",
        "Idle time before the cache releases a model whose class leaves `keep_alive` unset.",
        _seconds(0.0, strict=False),
    ),
    Variable(
        "SETRAF_LOCK_TIMEOUT", "lock_timeout", "seconds > 0, or `none`", "",
        "How long a call waits for another generation on the same model before "
        "`ModelBusyError`; `none` waits forever.", _lock_timeout,
    ),
    Variable(
        "SETRAF_PLUGINS", "plugins", "`all`, `none`, or comma-separated backend names",
        "`all`", "Which third-party backends (entry points) load; built-ins always do.",
        _plugins,
    ),
    Variable(
        "SETRAF_CGROUP_BUDGET", "cgroup_budget", "a boolean (`1`/`0`, `true`/`false`, "
        "`yes`/`no`, `on`/`off`)", "",
        "Count what the process's cgroup (container) has left as available memory.", _bool,
    ),
    Variable(
        "SETRAF_MALLOC_TUNING", "malloc_tuning", "a boolean", "",
        "Fix glibc's mmap and trim thresholds at 128 KiB so released models give their "
        "memory back.", _bool,
    ),
    Variable(
        "SETRAF_LLAMA_VERBOSE", "llama_verbose", "a boolean", "",
        "Let llama.cpp print its load and timing logs to stderr.", _bool,
    ),
    Variable(
        "SETRAF_RUNTIME_DIR", "runtime_dir", "a directory path",
        "`$XDG_RUNTIME_DIR/langchain-setraf`, else `~/.cache/langchain-setraf/run`",
        "State, locks, keys and logs of managed llama.cpp servers; set it to a setgid "
        "directory to share servers with a group.", _path,
    ),
    Variable(
        "SETRAF_SERVER_START_TIMEOUT", "server_start_timeout", "seconds > 0", "",
        "How long a new managed server may take to answer `/health`.",
        _seconds(0.0, strict=True),
    ),
    Variable(
        "SETRAF_SERVER_EXIT_GRACE", "server_exit_grace", "seconds >= 0", "",
        "How long a managed server with no live client stays up after its `keep_alive`.",
        _seconds(0.0, strict=False),
    ),
    Variable(
        "SETRAF_SERVER_LOG_MAX_BYTES", "server_log_max_bytes", "an integer >= 4096",
        "", "Size at which a managed server's log is rotated.", _log_bytes,
    ),
    Variable(
        "SETRAF_ERT_DIR", "ert_dir", "a directory path", "none",
        "A folder of sample surveys the Streamlit app adds to its picker.", _path,
    ),
    Variable(
        DEFAULT_API_KEY_ENV, "", "an API key", "none",
        "The key sent to an attached or managed server when `api_key_env` is left unset "
        "and no `api_key=` is given (read at load time, never stored in a field or logged).",
    ),
    Variable(
        f"{DEFAULT_API_KEY_ENV}_ORIGIN", "", "an origin (`https://host:port`)",
        "none (loopback servers only)",
        f"The one origin `{DEFAULT_API_KEY_ENV}`, or a key given as `api_key=`, may be sent "
        "to (any `<api_key_env>_ORIGIN` works the same way).",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The package's configuration from ``SETRAF_*`` variables (see :data:`VARIABLES`).

    Attributes:
        models_dir: ``SETRAF_MODELS_DIR``.
        max_memory: ``SETRAF_MAX_MEMORY`` in bytes; ``None``: no budget of its own.
        keep_alive: ``SETRAF_KEEP_ALIVE`` seconds; ``None``: models stay loaded.
        lock_timeout: ``SETRAF_LOCK_TIMEOUT`` seconds; ``None``: wait forever.
        plugins: ``SETRAF_PLUGINS``: the third-party backends allowed; ``None``: all.
        cgroup_budget: ``SETRAF_CGROUP_BUDGET``.
        malloc_tuning: ``SETRAF_MALLOC_TUNING``.
        llama_verbose: ``SETRAF_LLAMA_VERBOSE``.
        runtime_dir: ``SETRAF_RUNTIME_DIR``; ``None``: the per-user default.
        server_start_timeout: ``SETRAF_SERVER_START_TIMEOUT`` seconds.
        server_exit_grace: ``SETRAF_SERVER_EXIT_GRACE`` seconds.
        server_log_max_bytes: ``SETRAF_SERVER_LOG_MAX_BYTES``.
        ert_dir: ``SETRAF_ERT_DIR``; ``None``: no extra samples.
    """

    models_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "setraf" / "models")
    max_memory: int | None = None
    keep_alive: float | None = None
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT
    plugins: frozenset[str] | None = None
    cgroup_budget: bool = True
    malloc_tuning: bool = True
    llama_verbose: bool = False
    runtime_dir: Path | None = None
    server_start_timeout: float = 300.0
    server_exit_grace: float = 60.0
    server_log_max_bytes: int = 1 << 20
    ert_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every variable from ``env`` (default ``os.environ``, read now).

        Raises:
            SettingsError: A variable's value is refused (names it, its value and the
                expected form).
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = env.get(var.name)
            if var.parse is None or raw is None or not raw.strip():
                continue
            try:
                values[var.field] = var.parse(raw)
            except ValueError:
                raise SettingsError(f"{var.name}={raw!r}: expected {var.type}") from None
        return cls(**values)


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment as it is now (see :meth:`Settings.from_env`)."""
    return Settings.from_env(env)


def _default(var: Variable) -> str:
    if var.default:
        return var.default
    value = {f.name: f.default for f in fields(Settings)}[var.field]
    if value is MISSING:  # pragma: no cover - every field without a MISSING default has text
        raise RuntimeError(f"{var.name}: give its default in words")
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def markdown_table() -> str:
    """The docs table of :data:`VARIABLES` (``docs/configuration.md`` holds it verbatim)."""
    rows = ["| Variable | Value | Default | Meaning |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {v.type} | {_default(v)} | {v.meaning} |" for v in VARIABLES]
    return "\n".join(rows)


def _check_fields() -> None:
    named = {v.field for v in VARIABLES if v.field}
    declared = {f.name for f in fields(Settings)}
    if named != declared:  # pragma: no cover - a programming error caught at import
        raise RuntimeError(f"VARIABLES and Settings disagree: {sorted(named ^ declared)}")


_check_fields()
