"""``langchain_setraf.settings``: every ``SETRAF_*`` variable the package names is declared
there, documented in ``docs/configuration.md``, read only through it, and a bad value names
the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from langchain_setraf import settings as settings_module
from langchain_setraf.cache import ModelCache
from langchain_setraf.settings import (
    VARIABLES,
    Settings,
    SettingsError,
    get_settings,
    markdown_table,
)

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "langchain_setraf"
DOCS = REPO / "docs" / "configuration.md"
NAME = re.compile(r"\bSETRAF_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
#: Names that appear in src/ only as an example of a variable the user names in a config
#: (``http.api_key_env: SETRAF_INGRESS_KEY``): the package reads whichever name is given.
USER_CHOSEN = {"SETRAF_INGRESS_KEY"}


def _names_in_src() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(str(path.relative_to(REPO)))
    return found


def test_every_name_in_src_is_declared_and_documented() -> None:
    declared = {v.name for v in VARIABLES}
    names = _names_in_src()
    assert len(names) >= 14  # the scan sees the package (not an empty folder)
    undeclared = {n: where for n, where in names.items() if n not in declared | USER_CHOSEN}
    assert not undeclared, f"declare these in settings.VARIABLES: {undeclared}"
    table = DOCS.read_text(encoding="utf-8")
    assert markdown_table() in table, "regenerate docs/configuration.md's table"
    documented = set(re.findall(r"^\| `(SETRAF_[A-Z0-9_]+)` \|", table, flags=re.M))
    assert documented == declared
    assert "configuration.md" in (REPO / "docs" / "usage.md").read_text(encoding="utf-8")


def test_no_module_reads_a_setraf_variable_itself() -> None:
    """Only settings.py touches the environment for a ``SETRAF_*`` name: a direct read
    (``os.environ.get("SETRAF_…")``) or through a constant holding such a name."""
    constants = set()
    for path in SRC.rglob("*.py"):
        constants |= set(
            re.findall(r"^(\w+_ENV)\b.*=\s*\"SETRAF_", path.read_text(encoding="utf-8"), re.M)
        )
    read = re.compile(
        r"(environ|getenv|env)\s*(\.get\(|\[|\()\s*(\"SETRAF_|'SETRAF_|"
        + "|".join(sorted(constants) or ["^$"])
        + r")"
    )
    offenders = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "settings.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if read.search(line)
    ]
    assert constants  # the constant names are seen (RUNTIME_DIR_ENV, ...)
    assert not offenders, offenders


def test_defaults_and_parsing() -> None:
    s = get_settings({})
    assert s == Settings()
    assert s.lock_timeout == 600.0 and s.keep_alive is None and s.plugins is None
    assert s.cgroup_budget and s.malloc_tuning and not s.llama_verbose
    assert s.models_dir == Path.home() / ".cache" / "setraf" / "models"
    s = get_settings(
        {
            "SETRAF_LOCK_TIMEOUT": "none",
            "SETRAF_KEEP_ALIVE": "0",
            "SETRAF_MAX_MEMORY": "512MiB",
            "SETRAF_PLUGINS": " ngram , other ",
            "SETRAF_CGROUP_BUDGET": "off",
            "SETRAF_LLAMA_VERBOSE": "yes",
            "SETRAF_SERVER_LOG_MAX_BYTES": "4096",
            "SETRAF_RUNTIME_DIR": "~/run",
            "SETRAF_MODELS_DIR": "",  # empty: unset
        }
    )
    assert s.lock_timeout is None and s.keep_alive == 0.0 and s.max_memory == 512 * 2**20
    assert s.plugins == frozenset({"ngram", "other"}) and not s.cgroup_budget
    assert s.llama_verbose and s.server_log_max_bytes == 4096
    assert s.runtime_dir == Path.home() / "run"
    assert s.models_dir == Settings().models_dir
    assert get_settings({"SETRAF_PLUGINS": "none"}).plugins == frozenset()
    with pytest.raises(AttributeError):
        s.lock_timeout = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SETRAF_LOCK_TIMEOUT", "soon", "seconds > 0, or `none`"),
        ("SETRAF_LOCK_TIMEOUT", "0", "seconds > 0"),
        ("SETRAF_KEEP_ALIVE", "-1", "seconds >= 0"),
        ("SETRAF_KEEP_ALIVE", "nan", "seconds >= 0"),
        ("SETRAF_MAX_MEMORY", "lots", "a memory amount"),
        ("SETRAF_MAX_MEMORY", "0", "a memory amount"),
        ("SETRAF_MAX_MEMORY", "150%", "a memory amount"),
        ("SETRAF_CGROUP_BUDGET", "maybe", "a boolean"),
        ("SETRAF_LLAMA_VERBOSE", "2", "a boolean"),
        ("SETRAF_SERVER_START_TIMEOUT", "-5", "seconds > 0"),
        ("SETRAF_SERVER_EXIT_GRACE", "soon", "seconds >= 0"),
        ("SETRAF_SERVER_LOG_MAX_BYTES", "100", "an integer >= 4096"),
        ("SETRAF_SERVER_LOG_MAX_BYTES", "1e6", "an integer >= 4096"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        get_settings({name: value})
    assert str(caught.value).startswith(f"{name}={value!r}: expected {expected}")
    assert isinstance(caught.value, ValueError)


def test_read_at_call_time_by_the_modules_that_use_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from langchain_setraf.pull import default_models_dir

    monkeypatch.setenv("SETRAF_LOCK_TIMEOUT", "12.5")
    monkeypatch.setenv("SETRAF_KEEP_ALIVE", "3")
    monkeypatch.setenv("SETRAF_MAX_MEMORY", "1GB")
    cache = ModelCache()
    assert (cache.lock_timeout, cache.keep_alive, cache.max_memory) == (12.5, 3.0, 10**9)
    monkeypatch.setenv("SETRAF_MODELS_DIR", str(tmp_path))
    assert default_models_dir() == tmp_path
    monkeypatch.setenv("SETRAF_MODELS_DIR", str(tmp_path / "b"))
    assert default_models_dir() == tmp_path / "b"
    monkeypatch.setenv("SETRAF_KEEP_ALIVE", "soon")
    with pytest.raises(SettingsError, match="SETRAF_KEEP_ALIVE='soon'"):
        ModelCache()


def test_every_parsed_variable_fills_a_field() -> None:
    fields = set(Settings.__dataclass_fields__)
    assert {v.field for v in VARIABLES if v.parse is not None} == fields
    assert all(v.field == "" for v in VARIABLES if v.parse is None)
    assert settings_module.DEFAULT_API_KEY_ENV in {v.name for v in VARIABLES}
