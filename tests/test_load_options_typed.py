"""One typed, frozen options object per backend, inside ``LoadSpec``: declared once,
defaulted once, checked when built."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from langchain_setraf import GGUFLLM, ChatGGUF, ChatTransformers, TransformersLLM
from langchain_setraf.backends.base import LoadSpec
from langchain_setraf.backends.gguf.backend import GGUFBackend
from langchain_setraf.backends.llama_server.backend import LlamaServerBackend
from langchain_setraf.backends.llama_server.managed import ManagedServer, spec_key
from langchain_setraf.backends.openai_compat import OpenAICompatBackend
from langchain_setraf.backends.options import (
    BackendOptions,
    GGUFOptions,
    LlamaServerOptions,
    OpenAIOptions,
    PluginOptions,
    TransformersOptions,
)


@pytest.mark.parametrize(
    ("classes", "options", "renamed"),
    [
        ((GGUFLLM, ChatGGUF), GGUFOptions, {}),
        ((GGUFLLM, ChatGGUF), LlamaServerOptions, {"sleep_idle_seconds": None}),
        # api_key_ref: an opaque per-key reference the classes derive from api_key
        ((GGUFLLM, ChatGGUF), OpenAIOptions, {"api_key_ref": None}),
        ((TransformersLLM, ChatTransformers), TransformersOptions, {}),
    ],
)
def test_class_fields_take_their_defaults_from_the_options_object(
    classes: tuple[type[Any], ...], options: type[BackendOptions], renamed: dict[str, Any]
) -> None:
    """A default lives in the options class; the LangChain classes' fields repeat none."""
    defaults = options()
    for cls in classes:
        for f in dataclasses.fields(options):
            if f.name in renamed:  # set from another field (keep_alive, api_key), not a field
                continue
            field = cls.model_fields.get(f.name)
            assert field is not None, f"{cls.__name__} has no field {f.name}"
            assert field.default == getattr(defaults, f.name), (cls.__name__, f.name)


def test_unknown_and_bad_options_are_refused_by_name(smollm2_path: Path) -> None:
    with pytest.raises(TypeError, match=r"unknown GGUF load option\(s\): \['n_ctxx'\]; known"):
        GGUFBackend().spec_for(smollm2_path, n_ctxx=512)
    with pytest.raises(ValueError, match="n_ctx must be an integer >= 1, got 0"):
        GGUFBackend().spec_for(smollm2_path, n_ctx=0)
    with pytest.raises(ValueError, match="use_mmap must be True or False, got 'yes'"):
        GGUFOptions(use_mmap="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache_ram_mib must be an integer >= 0"):
        LlamaServerBackend().spec_for(smollm2_path, cache_ram_mib=-1)
    with pytest.raises(ValueError, match="request_timeout must be > 0 seconds"):
        OpenAICompatBackend().spec_for("http://127.0.0.1:1/v1", request_timeout=0)
    with pytest.raises(ValueError, match="unknown quantization 'nf3'"):
        TransformersOptions(quantization="nf3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not both"):
        GGUFBackend().spec_for(smollm2_path, GGUFOptions(), n_ctx=512)
    with pytest.raises(TypeError, match="expected GGUFOptions, got LlamaServerOptions"):
        GGUFBackend().spec_for(smollm2_path, LlamaServerOptions())  # type: ignore[arg-type]


def test_equal_options_are_one_cache_key_and_unset_means_the_default(smollm2_path: Path) -> None:
    backend = GGUFBackend()
    assert backend.spec_for(smollm2_path) == backend.spec_for(smollm2_path, n_ctx=2048)
    assert backend.spec_for(smollm2_path, GGUFOptions(n_ctx=512)) == backend.spec_for(
        smollm2_path, n_ctx=512
    )
    assert backend.spec_for(smollm2_path, n_ctx=512) != backend.spec_for(smollm2_path)
    # the class and the backend agree: no option is re-defaulted at the far end
    spec = GGUFLLM(n_threads=1)._backend_and_spec()[1]
    assert spec == backend.spec_for(smollm2_path, n_threads=1)
    assert spec.describe().endswith("(n_threads=1)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.options.n_ctx = 1  # type: ignore[misc]


def test_the_server_key_leaves_out_the_clients_timeout(smollm2_path: Path) -> None:
    backend = LlamaServerBackend()
    a = backend.spec_for(smollm2_path, n_ctx=256, request_timeout=5)
    b = backend.spec_for(smollm2_path, n_ctx=256, request_timeout=50)
    assert a != b  # two clients' specs...
    assert spec_key(a) == spec_key(b)  # ...one server
    assert spec_key(a) != spec_key(backend.spec_for(smollm2_path, n_ctx=512))
    args = ManagedServer.for_spec(a).server_args(9000)
    defaults = LlamaServerOptions()
    assert (args.n_ctx, args.n_parallel, args.n_batch) == (256, defaults.n_parallel, 512)
    assert args.sleep_idle_seconds == defaults.sleep_idle_seconds and args.repack is False


def test_plugins_still_build_specs_from_a_mapping() -> None:
    spec = LoadSpec.create("ngram", ("/corpus.txt", 1, 2), {"order": 3, "unset": None})
    assert spec.options == PluginOptions((("order", 3),))
    assert spec.options_dict == {"order": 3} and spec.describe() == "ngram:/corpus.txt (order=3)"
    assert spec == LoadSpec.create("ngram", ("/corpus.txt", 1, 2), {"order": 3})
