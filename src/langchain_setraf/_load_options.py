"""Load-option fields shared by an LLM class and its chat twin (one declaration each).

``GGUFLLM`` and ``ChatGGUF`` inherit :class:`GGUFLoadOptions`; ``TransformersLLM`` and
``ChatTransformers`` inherit :class:`TransformersLoadOptions`. The fields are the cache
key (with the weights' identity): equal values share one loaded model. What the model's
files say without loading the weights (its tokenizer, chat template, memory estimate) is
read here too, and unknown constructor arguments are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseLanguageModel
from pydantic import ConfigDict

from langchain_setraf._arguments import RefuseUnknownArguments
from langchain_setraf._vocabulary import HFTokenizer, gguf_vocabulary, hf_tokenizer, prompt_tokens
from langchain_setraf.backends.base import LoadSpec
from langchain_setraf.backends.gguf import GGUFBackend
from langchain_setraf.backends.transformers import TransformersBackend
from langchain_setraf.models import default_gguf_path

__all__ = ["GGUFLoadOptions", "Quantization", "TransformersLoadOptions"]

Quantization = Literal["nf4", "fp4", "int8", "bf16", "fp16", "fp32", "auto"]

_GGUF_BACKEND = GGUFBackend()
_HF_BACKEND = TransformersBackend()


class GGUFLoadOptions(RefuseUnknownArguments):
    """How a GGUF file is loaded by llama-cpp-python (memory-first defaults)."""

    model_path: str | None = None
    """Path of the ``.gguf`` file; ``None`` uses the embedded default model."""
    n_ctx: int = 2048
    """Context window in tokens (sizes the KV cache)."""
    n_batch: int = 512
    """Prompt-processing batch size."""
    n_threads: int | None = None
    """CPU threads; ``None`` lets llama.cpp decide."""
    n_gpu_layers: int = 0
    """Layers to offload to a GPU; 0 = CPU only."""
    use_mmap: bool = True
    """Map the weights from the file instead of copying them into anonymous memory."""
    use_mlock: bool = False
    """Pin the weights in RAM (off: lets the OS share and evict the mapped file)."""
    repack: bool = False
    """Let llama.cpp's CPU backend copy Q4_0/Q4_K/Q2_K/Q8_0/IQ4_NL weight matrices into an
    interleaved layout (llama.cpp's default; its ``--no-repack`` turns it off). Off here:
    the copy is anonymous memory about the size of those weights, in every process, on
    top of the mapped file. See the README's "Weight repacking" for the measured trade-off.
    Files in other types (e.g. Q4_1) are unaffected."""

    def resolved_model_path(self) -> Path:
        """The model file this object uses (the embedded default when unset)."""
        return Path(self.model_path) if self.model_path else default_gguf_path()

    def _gguf_backend_and_spec(self) -> tuple[GGUFBackend, LoadSpec]:
        path = self.resolved_model_path()
        options: dict[str, Any] = {
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_threads": self.n_threads,
            "n_gpu_layers": self.n_gpu_layers,
            "use_mmap": self.use_mmap,
            "use_mlock": self.use_mlock,
            "repack": self.repack,
        }
        return _GGUF_BACKEND, _GGUF_BACKEND.spec_for(path, **options)

    def _gguf_identity(self) -> dict[str, Any]:
        """The file and the load options that can change an answer (LangChain cache key)."""
        return {
            "model_path": self.model_path or "<default: SmolLM2-135M-Instruct Q4_1>",
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_gpu_layers": self.n_gpu_layers,
            "use_mmap": self.use_mmap,
            "use_mlock": self.use_mlock,
            "repack": self.repack,
        }

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` by the model's own vocabulary (special-token text parsed,
        no BOS added). Reads the vocabulary only: never loads the weights."""
        custom = _custom_get_token_ids(self)
        if custom is not None:
            return [int(t) for t in custom(text)]
        vocab = gguf_vocabulary(self.resolved_model_path())
        return vocab.tokenize(text.encode("utf-8"), False, True)

    def _prompt_token_ids(self, prompt: str) -> list[int]:
        """The tokens llama.cpp is given for ``prompt`` (one BOS at most), without a load."""
        return prompt_tokens(gguf_vocabulary(self.resolved_model_path()), prompt)


class TransformersLoadOptions(RefuseUnknownArguments):
    """How a transformers checkpoint is loaded (safe, offline defaults)."""

    model_config = ConfigDict(protected_namespaces=())

    model: str
    """Local checkpoint directory (config.json + *.safetensors), or a hub id in the local
    Hugging Face cache (``local_files_only=False`` to allow a download)."""
    quantization: Quantization = "auto"
    """``nf4`` | ``fp4`` | ``int8`` (bitsandbytes) | ``bf16`` | ``fp16`` | ``fp32`` | ``auto``
    (bf16 on the CPU, nf4 on CUDA with bitsandbytes)."""
    double_quant: bool = True
    """4-bit double quantisation (quantise the quantisation constants too)."""
    compute_dtype: Literal["bf16", "fp16", "fp32"] | None = None
    """Compute dtype of the 4-bit/8-bit layers (default bf16)."""
    cpu_repack: bool | None = None
    """nf4/fp4 on the CPU: let bitsandbytes repack the 4-bit weights for its AVX512-BF16
    kernel (faster; the double-quantised statistics are expanded to bf16). ``None``: what
    bitsandbytes does on this CPU (on where AVX512-BF16 exists); ``False``: never; ``True``:
    required (error on other CPUs). Settled at load. See the README."""
    device_map: str | None = None
    """``"cpu"``, ``"cuda"``, ``"auto"``…; ``None``: CPU, except on CUDA: ``auto`` for
    bitsandbytes, ``cuda`` for ``quantization="auto"`` (its fp16 goes to the GPU)."""
    allow_pickle: bool = False
    """Allow pickled (``.bin``) weights. Unpickling runs code: only for trusted checkpoints."""
    trust_remote_code: bool = False
    """Run the checkpoint's own Python code. Never implied."""
    local_files_only: bool = True
    """Never touch the network."""
    revision: str | None = None
    """Hub revision (with ``local_files_only=False``)."""

    def _hf_backend_and_spec(self) -> tuple[TransformersBackend, LoadSpec]:
        options: dict[str, Any] = {
            "quantization": self.quantization,
            "double_quant": self.double_quant,
            "compute_dtype": self.compute_dtype,
            "cpu_repack": self.cpu_repack,
            "device_map": self.device_map,
            "allow_pickle": self.allow_pickle or None,
            "trust_remote_code": self.trust_remote_code or None,
            "local_files_only": None if self.local_files_only else False,
            "revision": self.revision,
        }
        return _HF_BACKEND, _HF_BACKEND.spec_for(self.model, **options)

    def _tokenizer(self) -> HFTokenizer:
        """The checkpoint's tokenizer, loaded alone (never the weights)."""
        self._hf_backend_and_spec()  # the same checks as a load: directory, pickle policy
        return hf_tokenizer(
            self.model,
            trust_remote_code=self.trust_remote_code,
            local_files_only=self.local_files_only,
            revision=self.revision,
        )

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` by the checkpoint's tokenizer (no special tokens added).
        Loads the tokenizer only: never the weights."""
        custom = _custom_get_token_ids(self)
        if custom is not None:
            return [int(t) for t in custom(text)]
        return self._tokenizer().encode(text)

    def _prompt_token_ids(self, prompt: str) -> list[int]:
        """The tokens a chat-rendered prompt becomes (it carries its own special tokens)."""
        return self._tokenizer().encode(prompt)


def _custom_get_token_ids(model: object) -> Any:
    """LangChain's ``custom_get_token_ids`` override, when the object is a language model."""
    if isinstance(model, BaseLanguageModel):
        return model.custom_get_token_ids
    return None
