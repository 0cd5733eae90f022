"""Sentence-transformers checkpoints (a transformer, a pooling, maybe a normalisation)
loaded with plain transformers, in this process.

The checkpoint's own files say what the vectors are: ``modules.json`` lists the modules
(a ``Transformer``, a ``Pooling``, optionally a ``Normalize``; any other module, such as a
``Dense`` projection, is refused rather than skipped), ``1_Pooling/config.json`` the pooling
(mean, CLS or last token) and ``sentence_bert_config.json`` the longest text. Safetensors
only, never the network, never the checkpoint's own code. Texts are sorted by length and
grouped so that a forward pass holds at most ``batch_tokens`` padded tokens.
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_setraf.backends.base import BackendBase, LoadSpec, TextTooLongError, file_identity
from langchain_setraf.backends.options import TransformersEmbeddingOptions, options_from
from langchain_setraf.backends.tokenizer_cache import tokenizer_cache
from langchain_setraf.backends.transformers.backend import (
    CheckpointError,
    check_checkpoint,
    import_transformers,
)
from langchain_setraf.memory import give_back_memory, tune_allocator

__all__ = [
    "EmbeddingCheckpoint",
    "TransformersEmbeddingBackend",
    "TransformersEmbeddingHandle",
    "read_embedding_checkpoint",
    "safetensors_parameters",
]

_ST = "sentence_transformers.models."
_KNOWN_MODULES = {f"{_ST}Transformer", f"{_ST}Pooling", f"{_ST}Normalize"}
_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
_TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: Largest safetensors header read (the format's own limit is 100 MB).
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class EmbeddingCheckpoint:
    """What a sentence-transformers checkpoint's files say, without loading weights.

    Attributes:
        pooling: ``"mean"``, ``"cls"``, ``"last"``, or ``None`` when not declared.
        normalize: Whether a ``Normalize`` module ends the pipeline.
        max_tokens: ``max_seq_length`` (else ``max_position_embeddings``; ``None``: neither).
        hidden_size: Width of the vectors (``config.json``).
    """

    pooling: str | None
    normalize: bool
    max_tokens: int | None
    hidden_size: int


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read it as JSON ({exc})") from None


def _pooling_from(config: Any, path: Path) -> str | None:
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    modes = [
        name
        for key, name in (
            ("pooling_mode_mean_tokens", "mean"),
            ("pooling_mode_cls_token", "cls"),
            ("pooling_mode_lasttoken", "last"),
            ("pooling_mode_max_tokens", "max"),
            ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
            ("pooling_mode_weightedmean_tokens", "weightedmean"),
        )
        if config.get(key)
    ]
    if len(modes) == 1 and modes[0] in ("mean", "cls", "last"):
        return modes[0]
    raise CheckpointError(
        f"{path}: pooling {modes or 'none'} is not offered (one of mean, cls, last); "
        "pass pooling= to choose one"
    )


def read_embedding_checkpoint(directory: str | os.PathLike[str]) -> EmbeddingCheckpoint:
    """Read the pooling, normalisation and length of a checkpoint directory.

    Raises:
        CheckpointError: a module this package does not run, or an unreadable file.
    """
    root = Path(directory)
    config = _read_json(root / "config.json")
    hidden = int(config.get("hidden_size") or config.get("d_model") or 0)
    pooling: str | None = None
    normalize = False
    modules_file = root / "modules.json"
    if modules_file.is_file():
        modules = _read_json(modules_file)
        if not isinstance(modules, list):
            raise CheckpointError(f"{modules_file}: expected a JSON list of modules")
        for module in modules:
            kind = str(module.get("type", "")) if isinstance(module, dict) else repr(module)
            if kind not in _KNOWN_MODULES:
                raise CheckpointError(
                    f"{modules_file}: module {kind!r} is not run by this package (only "
                    "Transformer, Pooling and Normalize); its vectors would be wrong"
                )
            if kind.endswith("Normalize"):
                normalize = True
            elif kind.endswith("Pooling"):
                pool_dir = root / str(module.get("path", ""))
                pooling = _pooling_from(_read_json(pool_dir / "config.json"), pool_dir)
    max_tokens: int | None = None
    st_config = root / "sentence_bert_config.json"
    if st_config.is_file():
        value = _read_json(st_config).get("max_seq_length")
        max_tokens = int(value) if value else None
    if max_tokens is None and config.get("max_position_embeddings"):
        max_tokens = int(config["max_position_embeddings"])
    return EmbeddingCheckpoint(pooling, normalize, max_tokens, hidden)


def safetensors_parameters(directory: str | os.PathLike[str]) -> int:
    """Parameters in a directory's ``*.safetensors`` files, from their headers only.

    Raises:
        CheckpointError: a header that is not a bounded JSON table.
    """
    total = 0
    for path in sorted(Path(directory).glob("*.safetensors")):
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise CheckpointError(f"{path}: truncated safetensors header")
            (size,) = struct.unpack("<Q", raw)
            if size > _MAX_HEADER:
                raise CheckpointError(f"{path}: safetensors header of {size} bytes (bounded)")
            try:
                header = json.loads(fh.read(size))
            except ValueError as exc:
                raise CheckpointError(f"{path}: unreadable safetensors header ({exc})") from None
        for name, entry in header.items():
            if name != "__metadata__" and isinstance(entry, dict):
                total += math.prod(int(d) for d in entry.get("shape", []))
    return total


def _estimate(spec: LoadSpec, checkpoint: EmbeddingCheckpoint) -> int:
    opts = _options(spec)
    weights = safetensors_parameters(spec.path) * _DTYPE_BYTES[opts.dtype]
    config = _read_json(Path(spec.path) / "config.json")
    hidden = checkpoint.hidden_size or 1024
    inner = int(config.get("intermediate_size") or 4 * hidden)
    heads = int(config.get("num_attention_heads") or 1)
    longest = opts.max_tokens or checkpoint.max_tokens or 512
    # one forward pass of batch_tokens padded tokens: the widest activations, twice, and
    # the attention scores of one layer, in fp32
    activations = opts.batch_tokens * (inner + 4 * hidden) * 4 * 2
    scores = opts.batch_tokens * min(longest, opts.batch_tokens) * heads * 4
    return weights + activations + scores + 32 * 1024 * 1024


class TransformersEmbeddingHandle:
    """A loaded transformers encoder and its tokenizer, owned by the cache."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        checkpoint: EmbeddingCheckpoint,
        *,
        pooling: str,
        max_tokens: int,
        batch_tokens: int,
        estimate: int,
        path: str,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.pooling = pooling
        self.path = path
        self._max_tokens = max_tokens
        self._batch_tokens = batch_tokens
        self._estimate = estimate
        self._dimensions = int(model.config.hidden_size)

    @property
    def estimated_bytes(self) -> int:
        return self._estimate

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def model_normalizes(self) -> bool:
        """Whether the checkpoint ends with a ``Normalize`` module."""
        return self.checkpoint.normalize

    def _loaded(self) -> tuple[Any, Any]:
        if self.model is None or self.tokenizer is None:
            raise RuntimeError(f"{self.path}: the model was released")
        return self.model, self.tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as embedded (special tokens included)."""
        _, tokenizer = self._loaded()
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    def _groups(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped longest first, each group at most ``batch_tokens`` padded."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        groups: list[list[int]] = []
        for i in order:
            if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= self._batch_tokens:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def embed(self, texts: list[str], *, truncate: bool) -> list[list[float]]:
        model, tokenizer = self._loaded()
        if not texts:
            return []
        torch, _ = import_transformers()
        encoded = tokenizer(
            texts, add_special_tokens=True, truncation=truncate, max_length=self._max_tokens
        )["input_ids"]
        if not truncate:
            for index, ids in enumerate(encoded):
                if len(ids) > self._max_tokens:
                    raise TextTooLongError(self.path, index, len(ids), self._max_tokens)
        out: list[list[float]] = [[] for _ in texts]
        device = next(model.parameters()).device
        with torch.inference_mode():
            for group in self._groups([len(ids) for ids in encoded]):
                batch = tokenizer.pad(
                    {"input_ids": [encoded[i] for i in group]}, return_tensors="pt"
                )
                ids = batch["input_ids"].to(device)
                mask = batch["attention_mask"].to(device)
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
                pooled = _pool(torch, hidden.float(), mask, self.pooling)
                for row, i in zip(pooled.cpu().tolist(), group, strict=True):
                    out[i] = [float(x) for x in row]
        return out

    def close(self) -> None:
        model, self.model = self.model, None
        tokenizer, self.tokenizer = self.tokenizer, None
        del model, tokenizer
        give_back_memory()


def _pool(torch: Any, hidden: Any, mask: Any, pooling: str) -> Any:
    """One vector per row of ``hidden`` (batch × tokens × width) under ``mask``."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.sum(dim=1) - 1  # right padding: the last real token of each row
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class TransformersEmbeddingBackend(BackendBase):
    """The built-in ``transformers-embeddings`` backend."""

    name = "transformers-embeddings"
    model_field = "model"

    def missing_requirements(self) -> str | None:
        """``None`` if torch and transformers are installed, else what to install."""
        import importlib.util

        if importlib.util.find_spec("torch") is None or (
            importlib.util.find_spec("transformers") is None
        ):
            return "torch and transformers: pip install 'langchain-setraf[transformers]'"
        return None

    def spec_for(
        self,
        model_path: str | os.PathLike[str],
        options: TransformersEmbeddingOptions | None = None,
        **kwargs: Any,
    ) -> LoadSpec:
        """The cache key for the checkpoint directory ``model_path``.

        Raises:
            FileNotFoundError: no such directory.
            CheckpointError: not a safetensors checkpoint directory.
            TypeError: an unknown option.
            ValueError: a bad value (named).
        """
        opts = options_from(TransformersEmbeddingOptions, options, **kwargs)
        check_checkpoint(model_path, allow_pickle=False)
        return LoadSpec(self.name, file_identity(model_path), opts)

    def describe(self, spec: LoadSpec) -> EmbeddingCheckpoint:
        """What the checkpoint's files say (pooling, normalisation, length)."""
        return read_embedding_checkpoint(spec.path)

    def estimate_bytes(self, spec: LoadSpec) -> int:
        return _estimate(spec, read_embedding_checkpoint(spec.path))

    def load(self, spec: LoadSpec) -> TransformersEmbeddingHandle:
        opts = _options(spec)
        check_checkpoint(spec.path, allow_pickle=False)
        checkpoint = read_embedding_checkpoint(spec.path)
        pooling = opts.pooling or checkpoint.pooling
        if pooling is None:
            raise CheckpointError(
                f"{spec.path}: the checkpoint declares no pooling (no modules.json with a "
                "Pooling module); pass pooling='mean', 'cls' or 'last'"
            )
        max_tokens = opts.max_tokens or checkpoint.max_tokens
        if max_tokens is None:
            raise CheckpointError(
                f"{spec.path}: the checkpoint states no maximum length; pass max_tokens="
            )
        estimate = _estimate(spec, checkpoint)
        torch, transformers = import_transformers()
        tune_allocator()
        common = {"local_files_only": True, "trust_remote_code": False}
        model = tokenizer = None
        try:
            model = transformers.AutoModel.from_pretrained(
                spec.path,
                use_safetensors=True,
                dtype=getattr(torch, _TORCH_DTYPES[opts.dtype]),
                **common,
            )
            model.to(opts.device)
            model.eval()
            tokenizer = transformers.AutoTokenizer.from_pretrained(spec.path, **common)
        except BaseException:
            model = tokenizer = None
            give_back_memory()
            raise
        return TransformersEmbeddingHandle(
            model,
            tokenizer,
            checkpoint,
            pooling=pooling,
            max_tokens=max_tokens,
            batch_tokens=opts.batch_tokens,
            estimate=estimate,
            path=spec.path,
        )

    def prompt_tokens(self, spec: LoadSpec, text: str) -> list[int]:
        """The token ids ``text`` is embedded as (special tokens included), from the
        checkpoint's tokenizer alone (no weights loaded)."""
        return _tokenizer(spec.path).encode(text)


class _Tokenizer:
    """A checkpoint's tokenizer alone, shared by threads (a fast tokenizer is not)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        with self._lock:
            return [int(i) for i in self._tok(text, add_special_tokens=True)["input_ids"]]


def _tokenizer(path: str) -> _Tokenizer:
    def build() -> _Tokenizer:
        _, transformers = import_transformers()
        return _Tokenizer(
            transformers.AutoTokenizer.from_pretrained(
                path, local_files_only=True, trust_remote_code=False
            )
        )

    return tokenizer_cache().hf.get(("hf-embedding", *file_identity(path)), build)


def _options(spec: LoadSpec) -> TransformersEmbeddingOptions:
    if not isinstance(spec.options, TransformersEmbeddingOptions):
        raise TypeError(
            f"{spec.describe()}: expected transformers embedding options, got "
            f"{type(spec.options).__name__}"
        )
    return spec.options
