"""The ``setraf`` command's verbs: ``--model URI`` through the factory for every command that
loads a model, ``serve ray CONFIG`` and the deprecated spellings (each still works and
prints one line naming the new verb). ``ps``/``stop`` on real servers are in
``test_server_managed.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from langchain_setraf.cli import main
from langchain_setraf.cli_model import build_llm, model_uri
from langchain_setraf.factory import resolve_uri
from langchain_setraf.plugins import BackendInfo

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two_layer_wenner.dat"


def _setraf(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "langchain_setraf.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_default_uri_is_the_embedded_model_in_process(smollm2_path: Path) -> None:
    backend, model = resolve_uri("default")
    assert backend.name == "gguf" and Path(model) == smollm2_path
    llm = build_llm("default", {}, {"n_ctx": 1024, "max_tokens": 4})
    assert type(llm).__name__ == "GGUFLLM" and not llm.is_loaded
    assert (llm.n_ctx, llm.max_tokens, llm.server) == (1024, 4, False)


def test_command_defaults_go_only_where_they_apply(tmp_path: Path) -> None:
    # an attached server owns its context: interpret's n_ctx default is not sent
    llm = build_llm("openai:http://127.0.0.1:9/v1", {}, {"n_ctx": 4096, "temperature": 0.2})
    assert llm.server_url == "http://127.0.0.1:9/v1" and llm.temperature == 0.2
    # ... but an n_ctx the user gives is, and the class refuses it by name
    with pytest.raises(ValueError, match="n_ctx would be ignored"):
        build_llm("openai:http://127.0.0.1:9/v1", {"n_ctx": 100}, {})
    # llama-server: loads the file itself, so it gets the default, and server=True
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    llm = build_llm(f"llama-server:{gguf}", {}, {"n_ctx": 4096})
    assert llm.server is True and llm.n_ctx == 4096


def test_old_backend_option_maps_to_a_uri_or_is_refused() -> None:
    assert model_uri(None) == "default"
    assert model_uri("/m.gguf", "gguf") == "gguf:/m.gguf"
    assert model_uri("./models/x:y.gguf", "gguf") == "gguf:./models/x:y.gguf"
    for model in ("gguf:/m.gguf", "default", None):
        with pytest.raises(ValueError, match="give one URI instead"):
            model_uri(model, "transformers")


def test_generate_with_a_gguf_uri(smollm2_path: Path) -> None:
    out = _setraf(
        "generate", "Say hi.", "--model", f"gguf:{smollm2_path}", "--max-tokens", "6",
        "--temperature", "0",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert f"model: {smollm2_path.resolve()}" in out.stderr and "memory after release" in out.stderr


def test_a_bad_uri_is_a_clear_error_before_any_work(tmp_path: Path) -> None:
    out = _setraf("generate", "hi", "--model", "nope:/x")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "setraf: error: unknown backend 'nope'; available: gguf, llama-server, openai, transformers"
    )
    missing = tmp_path / "absent.gguf"
    out = _setraf("interpret", str(EXAMPLE), "--model", str(missing))
    assert out.returncode == 2 and "absent.gguf" in out.stderr
    assert "reading" not in out.stderr  # refused before the survey is read
    out = _setraf("interpret", str(EXAMPLE), "--backend", "gguf", "--model", "gguf:/m.gguf")
    assert out.returncode == 2
    assert "setraf: 'setraf interpret --backend NAME' is deprecated" in out.stderr
    assert "--backend gguf with --model gguf:/m.gguf: give one URI instead" in out.stderr


@pytest.mark.slow  # a real interpretation with the embedded model
def test_interpret_with_the_old_backend_option_still_works(smollm2_path: Path) -> None:
    out = _setraf(
        "interpret", str(EXAMPLE), "--lang", "en", "--backend", "gguf", "--model",
        str(smollm2_path), "--max-tokens", "48", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.splitlines()[0] == (
        "setraf: 'setraf interpret --backend NAME' is deprecated and removed in 0.5.0; "
        "use 'setraf interpret --model NAME:PATH'"
    )
    assert f"loading model gguf:{smollm2_path}" in out.stderr
    assert '"language": "en"' in out.stdout


def test_models_load_takes_default(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from langchain_setraf import default_gguf_path, release_all

    release_all()  # the process-wide cache may hold other tests' models
    try:
        assert main(["models", "--load", "default", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert [(m["backend"], m["path"]) for m in data["loaded"]] == [
            ("gguf", str(default_gguf_path().resolve()))
        ]
        # the split of issue 23: the estimate's parts add up, llama.cpp's KV buffer is it
        [loaded] = data["loaded"]
        estimate, allocated = loaded["memory"], loaded["allocated"]
        assert estimate["total"] == loaded["estimated_bytes"] > estimate["kv_cache"] > 0
        assert allocated["source"] == "llama.cpp"
        assert abs(allocated["kv_cache"] - estimate["kv_cache"]) < 1 << 20
        assert main(["models"]) == 0
        text = capsys.readouterr().out
        assert "estimate   weights" in text and "allocated  weights" in text
    finally:
        release_all()


def test_serve_ray_verb_and_its_deprecated_spelling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both reach the Ray app with the config (a missing file: its error, exit 2); the old
    one says so first. Neither starts Ray for a config it cannot read."""
    pytest.importorskip("ray.serve")
    missing = tmp_path / "absent.yaml"
    assert main(["serve", "ray", str(missing)]) == 2
    new = capsys.readouterr()
    assert "absent.yaml" in new.err and "deprecated" not in new.err
    assert main(["serve", "--ray", str(missing), "--detach"]) == 2
    old = capsys.readouterr()
    assert old.err.splitlines()[0] == (
        "setraf: 'setraf serve --ray CONFIG' is deprecated and removed in 0.5.0; "
        "use 'setraf serve ray CONFIG'"
    )
    assert "absent.yaml" in old.err
    assert main(["serve"]) == 2
    assert "setraf serve ray CONFIG" in capsys.readouterr().err
    assert main(["serve", "--ray", "a.yaml", "ray", "b.yaml"]) == 2
    assert "give the config once" in capsys.readouterr().err


def test_backend_info_missing_and_its_deprecated_name() -> None:
    info = BackendInfo("x", "m:C", "dist", "1", False, True, None, "libfoo")
    assert info.missing == "libfoo"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert info.ready == "libfoo"
    [warning] = caught
    assert warning.category is DeprecationWarning
    assert "BackendInfo.missing" in str(warning.message) and "0.5.0" in str(warning.message)
