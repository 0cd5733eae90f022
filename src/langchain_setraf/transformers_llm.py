"""``TransformersLLM``: a transformers checkpoint (NF4/int8/bf16/…) on the shared cache."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, model_validator

from langchain_setraf._cached import check_overrides, merge_stops
from langchain_setraf._load_options import TransformersLoadOptions
from langchain_setraf.backends.base import GenerationRequest, LoadSpec
from langchain_setraf.backends.transformers.backend import TransformersBackend
from langchain_setraf.chat_base import LocalChatModel
from langchain_setraf.chat_models import ChatTransformers
from langchain_setraf.llm_base import CachedLLM

__all__ = ["TransformersLLM"]

#: Sampling options a call may override with ``llm.invoke(prompt, temperature=0, ...)``.
_HF_SAMPLING = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "do_sample",
    "seed",
)
#: The old name of ``max_tokens`` (transformers' own), accepted with a warning until 0.5.0.
_OLD_MAX_TOKENS = "max_new_tokens"


def _max_tokens_alias(owner: str, given: dict[str, Any], stacklevel: int) -> dict[str, Any]:
    """``given`` with the deprecated ``max_new_tokens`` renamed ``max_tokens``, warning
    (``stacklevel`` as :func:`warnings.warn`'s, counted from this function's caller)."""
    if _OLD_MAX_TOKENS not in given:
        return given
    warnings.warn(
        f"{owner}: max_new_tokens is deprecated, use max_tokens (the name of every class of "
        "this package and of ChatOpenAI); max_new_tokens is removed in 0.5.0",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    out = dict(given)
    old = out.pop(_OLD_MAX_TOKENS)
    if "max_tokens" in out and out["max_tokens"] != old:
        raise ValueError(
            f"{owner}: max_tokens={out['max_tokens']!r} and max_new_tokens={old!r} name one "
            "limit (max_new_tokens is its deprecated name): give max_tokens only"
        )
    out["max_tokens"] = old
    return out


class TransformersLLM(TransformersLoadOptions, CachedLLM):
    r"""A local transformers checkpoint (bf16, or NF4/int8 by bitsandbytes) on the shared cache.

    Safe by default: safetensors only (pickled ``.bin`` weights need ``allow_pickle=True``),
    ``trust_remote_code`` off, no network (``local_files_only=True``). The dtype is always
    passed explicitly and checked after loading; for ``nf4``/``fp4``/``int8`` the
    bitsandbytes layers are checked too. One load per checkpoint and load options, shared
    by every object, chain and thread (``ChatTransformers`` included); ``release()`` gives
    the memory back. The constructor never loads weights; the first call does.

    ``quantization="auto"`` means bf16 on the CPU (measured fastest and smallest there)
    and nf4 on CUDA when bitsandbytes is installed.

    Setup:
        Install the transformers extra (on a CPU-only host, the CPU build of torch first)
        and have a checkpoint directory (``config.json``, ``*.safetensors``, tokenizer)
        on disk: nothing is downloaded unless ``local_files_only=False``.

        .. code-block:: bash

            pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
            pip install 'langchain-setraf[transformers]'

    Key init args — completion params:
        max_tokens: int
            Most tokens to generate (256). ``max_new_tokens``, its old name, still works
            with a ``DeprecationWarning`` until 0.5.0.
        temperature: float
            Sampling temperature (0.8); ``0`` is greedy.
        top_p: float
            Nucleus sampling (0.95).
        top_k: int
            Sample from the ``top_k`` likeliest tokens (40).
        repetition_penalty: float
            Penalty on repeated tokens (1.1).
        do_sample: bool | None
            ``None``: sample when ``temperature > 0``, greedy otherwise.
        stop: list[str] | None
            Stop sequences applied to the text, merged with those passed per call.
        seed: int | None
            Sampling seed; ``None`` is random.
        model_kwargs: dict
            Other ``generate`` arguments.

    Key init args — client params:
        model: str
            Checkpoint directory, or a hub id already in the local Hugging Face cache.
        quantization: str
            ``"nf4"`` | ``"fp4"`` | ``"int8"`` (bitsandbytes) | ``"bf16"`` | ``"fp16"`` |
            ``"fp32"`` | ``"auto"`` (default).
        double_quant: bool
            4-bit double quantisation (True).
        compute_dtype: str | None
            Compute dtype of the 4-bit/8-bit layers (``None``: bf16).
        device_map: str | None
            ``"cpu"``, ``"cuda"``, ``"auto"``…; ``None``: the CPU, or CUDA when present.
        allow_pickle / trust_remote_code: bool
            Allow pickled weights / run the checkpoint's own code (both False).
        local_files_only: bool
            Never touch the network (True).
        keep_alive: float | None
            Release the model after this many idle seconds (``None``: keep it; ``0``: after
            each call).
        streaming: bool
            Stream internally on ``invoke`` so callbacks get every token (False).
        timeout: float | None
            Seconds the whole call may take (``None``: no limit of its own), the wait for
            a model busy with another generation included: the generation is stopped at
            the deadline (checked between tokens), the model released, and
            ``CallTimeoutError`` (a ``TimeoutError``) raised.
        max_retries: int
            Tries after the first when the model is refused as busy (``ModelBusyError``:
            another generation held it past the cache's ``lock_timeout``); 0.5 s apart,
            doubling (at most 4 s). 2 by default.
        api_key: SecretStr | None
            Accepted for LangChain's conventions, but the model runs in this process and
            no server is reached: a ``UserWarning`` naming the class says the key has no
            use. A ``SecretStr``: never shown in a repr, a log or a dump.

    See the fields below for every init arg.

    Instantiate:
        .. code-block:: python

            from langchain_setraf import TransformersLLM

            llm = TransformersLLM(
                model="/models/SmolLM2-135M-Instruct",
                quantization="bf16",
                temperature=0,
                max_tokens=32,
                # other params...
            )

    Invoke:
        .. code-block:: python

            llm.invoke("The capital of France is", stop=["\n"])  # -> ' Paris.'

    Stream:
        .. code-block:: python

            for chunk in llm.stream("The capital of France is", stop=["\n"]):
                print(chunk, end="|")
            # -> ' Paris|.||'

    Async:
        .. code-block:: python

            await llm.ainvoke("The capital of Italy is", stop=["\n"])  # -> ' Rome.'

    Token usage:
        .. code-block:: python

            result = llm.generate(["The capital of France is"], stop=["\n"])
            result.llm_output
            # -> {'token_usage': {'prompt_tokens': 5, 'completion_tokens': 4, 'total_tokens': 9}}

            llm.get_num_tokens("The capital of France is")  # -> 5 (loads the tokenizer only)

    Shared cache, release and keep_alive:
        .. code-block:: python

            from langchain_setraf import ChatTransformers

            ChatTransformers(model="/models/SmolLM2-135M-Instruct", quantization="bf16").is_loaded
            # -> True (the weights llm loaded)
            llm.release()  # -> True
            llm.is_loaded  # -> False

            brief = TransformersLLM(model="/models/SmolLM2-135M-Instruct", keep_alive=60)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    chat_model_class: ClassVar[type[LocalChatModel] | None] = ChatTransformers

    max_tokens: int = 256
    """Most tokens to generate (``max_new_tokens``: its deprecated name, until 0.5.0)."""
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    repetition_penalty: float = 1.1
    do_sample: bool | None = None
    """``None``: sample when ``temperature > 0``, greedy otherwise."""
    stop: list[str] | None = None
    """Stop sequences, applied to the text (merged with those passed per call)."""
    seed: int | None = None
    """Seed for sampling (sets torch's global RNG under the model's lock)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra ``generate`` keyword arguments."""

    @model_validator(mode="before")
    @classmethod
    def _rename_max_new_tokens(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and _OLD_MAX_TOKENS in data:
            # 4 frames up: LangChain's and pydantic's constructors, then the caller's line
            return _max_tokens_alias(cls.__name__, dict(data), stacklevel=4)
        return data

    @property
    def max_new_tokens(self) -> int:
        """Deprecated name of :attr:`max_tokens` (removed in 0.5.0)."""
        warnings.warn(
            "TransformersLLM.max_new_tokens is deprecated, use max_tokens; it is removed in 0.5.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.max_tokens

    def _backend_and_spec(self) -> tuple[TransformersBackend, LoadSpec]:
        return self._hf_backend_and_spec()

    @property
    def _llm_type(self) -> str:
        return "setraf-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "revision": self.revision,
            "quantization": self.quantization,
            "double_quant": self.double_quant,
            "compute_dtype": self.compute_dtype,
            "cpu_repack": self.cpu_repack,
            "device_map": self.device_map,
            **self._generate_params({}),
            # "stop" itself is overwritten by LangChain with the call's own stop sequences
            "stop_sequences": self.stop,
            "model_kwargs": self.model_kwargs,
        }

    def _generate_params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """This object's sampling settings and a call's overrides, in transformers' names."""
        overrides = _max_tokens_alias("TransformersLLM", overrides, stacklevel=1)
        check_overrides("TransformersLLM", overrides, _HF_SAMPLING)
        merged: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "do_sample": self.do_sample,
            "seed": self.seed,
            **overrides,
        }
        merged["max_new_tokens"] = merged.pop("max_tokens")
        return merged

    def _generation_request(
        self, stop: list[str] | None, overrides: dict[str, Any]
    ) -> GenerationRequest:
        params = {**self.model_kwargs, **self._generate_params(overrides)}
        return GenerationRequest(params=params, stop=merge_stops(self.stop, stop))

    def _model_name(self) -> str:
        return Path(self.model).name
