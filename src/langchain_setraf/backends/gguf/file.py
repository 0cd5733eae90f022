"""Pure-Python, bounds-checked reader for GGUF headers.

llama.cpp trusts the file it is given: a truncated or hostile GGUF can crash the whole
process. :func:`read_gguf_header` validates the magic, version, every key-value pair and
the tensor table (types, shapes, offsets inside the file) before llama.cpp is called, and
raises :class:`GGUFFormatError` (a ``ValueError``) naming the file, the byte offset and
what was expected.

Example:
    >>> from langchain_setraf.backends.gguf.file import read_gguf_header
    >>> from langchain_setraf.models import default_gguf_path
    >>> info = read_gguf_header(default_gguf_path())
    >>> info.architecture
    'llama'
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_setraf.backends.base import file_identity

__all__ = [
    "GGML_TYPES",
    "GGUFFormatError",
    "GGUFInfo",
    "GGUFTensor",
    "gguf_file_identity",
    "read_gguf_header",
    "read_gguf_header_cached",
]

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_DIMS = 4
MAX_COUNT = 1 << 24  # far above any real model's tensor or key-value count
SMALL_ARRAY = 64  # arrays longer than this are kept as a length only

# ggml type id -> (name, elements per block, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# GGUF metadata value types: id -> (name, struct format or None for variable size)
_VALUE_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("uint8", "<B"),
    1: ("int8", "<b"),
    2: ("uint16", "<H"),
    3: ("int16", "<h"),
    4: ("uint32", "<I"),
    5: ("int32", "<i"),
    6: ("float32", "<f"),
    7: ("bool", "<?"),
    8: ("string", None),
    9: ("array", None),
    10: ("uint64", "<Q"),
    11: ("int64", "<q"),
    12: ("float64", "<d"),
}


class GGUFFormatError(ValueError):
    """A file is not a valid GGUF model (names the file, offset and expectation)."""


@dataclass(frozen=True)
class GGUFTensor:
    """One entry of the tensor table."""

    name: str
    shape: tuple[int, ...]
    type_name: str
    offset: int
    nbytes: int


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep in memory: its type, length and where it starts."""

    item_type: str
    length: int
    offset: int = -1
    """Byte offset of the first item in the file (-1: unknown)."""


@dataclass
class GGUFInfo:
    """What the header of a GGUF file says."""

    path: Path
    version: int
    file_size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[GGUFTensor] = field(default_factory=list)
    data_offset: int = 0
    special_tokens: dict[str, str] = field(default_factory=dict)
    """Text of the BOS/EOS tokens (``"bos"``, ``"eos"``) named by the tokenizer metadata,
    for chat templates that write ``{{ bos_token }}`` / ``{{ eos_token }}``."""

    @property
    def architecture(self) -> str | None:
        """``general.architecture`` (``"llama"``, ``"gemma3"``, …)."""
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template stored in the file, if any."""
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def vocab_size(self) -> int:
        """Entries of the file's vocabulary (``tokenizer.ggml.tokens``; 0: none)."""
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        return 0 if tokens is None else int(getattr(tokens, "length", None) or len(tokens))

    @property
    def tensor_bytes(self) -> int:
        """Total bytes of all tensor data."""
        return sum(t.nbytes for t in self.tensors)

    def arch_value(self, suffix: str, default: Any = None) -> Any:
        """Read ``<architecture>.<suffix>`` from the metadata."""
        arch = self.architecture
        if arch is None:
            return default
        return self.metadata.get(f"{arch}.{suffix}", default)


class _Reader:
    def __init__(self, buf: Any, path: Path) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path

    def fail(self, what: str, at: int | None = None) -> GGUFFormatError:
        where = self.pos if at is None else at
        return GGUFFormatError(f"{self.path}: invalid GGUF at byte {where}: {what}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                f"expected {what} ({n} bytes) but only {self.size - self.pos} bytes remain "
                f"(file size {self.size})"
            )

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str) -> str:
        length = self.unpack("<Q", f"length of {what}")
        self.need(length, f"{what} of {length} bytes")
        raw = bytes(self.buf[self.pos : self.pos + length])
        start = self.pos
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not valid UTF-8 ({exc.reason})", at=start) from None

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype not in _VALUE_TYPES:
            raise self.fail(f"unknown metadata value type {vtype} for {what}")
        name, fmt = _VALUE_TYPES[vtype]
        if fmt is not None:
            return self.unpack(fmt, f"{name} value of {what}")
        if name == "string":
            return self.string(f"string value of {what}")
        # array
        if depth > 2:
            raise self.fail(f"arrays nested deeper than 2 levels in {what}")
        item_type = self.unpack("<I", f"array item type of {what}")
        if item_type not in _VALUE_TYPES:
            raise self.fail(f"unknown array item type {item_type} in {what}")
        count = self.unpack("<Q", f"array length of {what}")
        item_name, item_fmt = _VALUE_TYPES[item_type]
        min_item = struct.calcsize(item_fmt) if item_fmt else 8
        if count > (self.size - self.pos) // max(min_item, 1):
            raise self.fail(
                f"array {what} claims {count} items of {item_name} but only "
                f"{self.size - self.pos} bytes remain"
            )
        if item_fmt is not None:
            n = struct.calcsize(item_fmt) * count
            self.need(n, f"{count} {item_name} items of {what}")
            start = self.pos
            self.pos += n
            if count <= SMALL_ARRAY:
                return list(struct.unpack_from(f"<{count}{item_fmt[1]}", self.buf, start))
            return ArrayInfo(item_name, count)
        if count > SMALL_ARRAY and item_name == "string":
            # walk the lengths with bounds checks, without decoding (vocabularies are big)
            buf, size, pos = self.buf, self.size, self.pos
            start = pos
            for i in range(count):
                if pos + 8 > size:
                    self.pos = pos
                    raise self.fail(f"{what}[{i}]: string length past the end of the file")
                (length,) = struct.unpack_from("<Q", buf, pos)
                pos += 8 + length
                if pos > size:
                    self.pos = pos - length
                    raise self.fail(
                        f"{what}[{i}]: string of {length} bytes runs past the end of the file"
                    )
            self.pos = pos
            return ArrayInfo(item_name, count, start)
        items = [self.value(item_type, f"{what}[{i}]", depth + 1) for i in range(count)]
        return items if count <= SMALL_ARRAY else ArrayInfo(item_name, count)


def read_gguf_header(path: str | os.PathLike[str]) -> GGUFInfo:
    """Validate a GGUF file's header, metadata and tensor table, with bounds checks.

    Args:
        path: The ``.gguf`` file.

    Returns:
        A :class:`GGUFInfo` with the metadata (long arrays kept as :class:`ArrayInfo`)
        and the tensor table.

    Raises:
        FileNotFoundError: The path does not exist.
        IsADirectoryError: The path is a directory.
        PermissionError: The file cannot be read.
        GGUFFormatError: The content is not a valid GGUF file; the message names the file,
            the byte offset and what was expected instead.
    """
    p = Path(path)
    try:
        resolved = p.resolve(strict=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {p}") from None
    except RuntimeError as exc:  # symlink loop on older Pythons
        raise GGUFFormatError(f"{p}: cannot resolve path ({exc})") from None
    except OSError as exc:  # ELOOP and friends
        raise GGUFFormatError(f"{p}: cannot resolve path ({exc.strerror})") from None
    if resolved.is_dir():
        raise IsADirectoryError(f"model path is a directory, expected a .gguf file: {p}")
    if not resolved.is_file():  # a FIFO would block open() forever; sockets, devices
        raise GGUFFormatError(f"{p}: not a regular file (FIFO, socket or device), expected .gguf")
    with open(resolved, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            head = fh.read(4)
            if head != GGUF_MAGIC:
                raise GGUFFormatError(
                    f"{p}: not a GGUF file: expected magic b'GGUF', found {head!r} "
                    f"(file size {size} bytes)"
                )
            raise GGUFFormatError(f"{p}: truncated GGUF header: {size} bytes, need at least 24")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _parse(mm, p, size)


def read_gguf_header_cached(path: str | os.PathLike[str]) -> GGUFInfo:
    """:func:`read_gguf_header`, parsed once per file version (real path, size, mtime).

    Loading validates the header, and so do the memory estimate and the chat template;
    walking a 49k-token vocabulary in Python takes ~0.1 s, so the cache, the backend and
    the chat classes share one parse. A file replaced on disk is parsed again. Failures
    are never cached: the same bad file raises the same error every time.
    """
    p = Path(path)
    try:
        real = p.resolve(strict=True)
        st = real.stat()
    except (OSError, RuntimeError):
        return read_gguf_header(p)  # raises the specific error
    if not real.is_file():
        return read_gguf_header(p)
    return _parse_cached(str(real), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _parse_cached(real: str, size: int, mtime_ns: int) -> GGUFInfo:
    return read_gguf_header(real)


def _special_tokens(buf: Any, metadata: dict[str, Any]) -> dict[str, str]:
    """Look up the BOS/EOS token text in the (already bounds-checked) vocabulary."""
    tokens = metadata.get("tokenizer.ggml.tokens")
    out: dict[str, str] = {}
    for name in ("bos", "eos"):
        idx = metadata.get(f"tokenizer.ggml.{name}_token_id")
        if not isinstance(idx, int) or idx < 0:
            continue
        if isinstance(tokens, list) and idx < len(tokens) and isinstance(tokens[idx], str):
            out[name] = tokens[idx]
        elif isinstance(tokens, ArrayInfo) and tokens.item_type == "string":
            if idx >= tokens.length or tokens.offset < 0:
                continue
            pos = tokens.offset
            for _ in range(idx):
                (length,) = struct.unpack_from("<Q", buf, pos)
                pos += 8 + length
            (length,) = struct.unpack_from("<Q", buf, pos)
            out[name] = bytes(buf[pos + 8 : pos + 8 + length]).decode("utf-8", "replace")
    return out


def _parse(buf: Any, path: Path, size: int) -> GGUFInfo:
    r = _Reader(buf, path)
    magic = bytes(buf[0:4])
    if magic != GGUF_MAGIC:
        raise GGUFFormatError(f"{path}: not a GGUF file: expected magic b'GGUF', found {magic!r}")
    r.pos = 4
    version = r.unpack("<I", "version")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFFormatError(
            f"{path}: unsupported GGUF version {version}, expected one of {SUPPORTED_VERSIONS}"
        )
    n_tensors = r.unpack("<Q", "tensor count")
    n_kv = r.unpack("<Q", "key-value count")
    if n_tensors > MAX_COUNT or n_tensors * 24 > size:
        raise r.fail(f"absurd tensor count {n_tensors} for a file of {size} bytes", at=8)
    if n_kv > MAX_COUNT or n_kv * 13 > size:
        raise r.fail(f"absurd key-value count {n_kv} for a file of {size} bytes", at=16)
    info = GGUFInfo(path=path, version=version, file_size=size)
    for i in range(n_kv):
        key = r.string(f"key #{i}")
        vtype = r.unpack("<I", f"value type of key {key!r}")
        info.metadata[key] = r.value(vtype, f"key {key!r}")
    info.special_tokens = _special_tokens(buf, info.metadata)
    alignment = info.metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise r.fail(f"general.alignment must be a positive power of two, found {alignment!r}")
    raw_tensors: list[tuple[str, tuple[int, ...], int, int, int]] = []
    for i in range(n_tensors):
        start = r.pos
        name = r.string(f"name of tensor #{i}")
        n_dims = r.unpack("<I", f"dimension count of tensor {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise r.fail(f"tensor {name!r} has {n_dims} dimensions, expected 1..{MAX_DIMS}")
        dims = tuple(r.unpack("<Q", f"dimension {d} of tensor {name!r}") for d in range(n_dims))
        ttype = r.unpack("<I", f"type of tensor {name!r}")
        offset = r.unpack("<Q", f"data offset of tensor {name!r}")
        if ttype not in GGML_TYPES:
            raise r.fail(f"tensor {name!r} has unknown ggml type {ttype}", at=start)
        raw_tensors.append((name, dims, ttype, offset, start))
    data_offset = (r.pos + alignment - 1) // alignment * alignment
    info.data_offset = data_offset
    for name, dims, ttype, offset, start in raw_tensors:
        type_name, block, type_size = GGML_TYPES[ttype]
        n_elements = 1
        for d in dims:
            if d == 0 or d > (1 << 40):
                raise r.fail(f"tensor {name!r} has an invalid dimension {d}", at=start)
            n_elements *= d
        if n_elements > (1 << 42):
            raise r.fail(f"tensor {name!r} has an absurd element count {n_elements}", at=start)
        if dims[0] % block:
            raise r.fail(
                f"tensor {name!r} of type {type_name}: first dimension {dims[0]} is not a "
                f"multiple of the block size {block}",
                at=start,
            )
        nbytes = n_elements // block * type_size
        if offset % alignment:
            raise r.fail(
                f"tensor {name!r} data offset {offset} is not aligned to {alignment}", at=start
            )
        end = data_offset + offset + nbytes
        if end > size:
            raise r.fail(
                f"tensor {name!r} data ends at byte {end}, past the end of the file "
                f"({size} bytes): truncated or corrupt",
                at=start,
            )
        info.tensors.append(GGUFTensor(name, dims, type_name, offset, nbytes))
    return info


def gguf_file_identity(model_path: str | os.PathLike[str]) -> tuple[str, int, int, int, int]:
    """The identity of a GGUF file for a cache spec
    (:func:`~langchain_setraf.backends.base.file_identity`), with the errors a model load
    gives.

    Raises:
        FileNotFoundError: no such file.
        GGUFFormatError: the file cannot be opened (names the file and why).
    """
    path = Path(model_path)
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        return file_identity(path)
    except OSError as exc:
        raise GGUFFormatError(f"{path}: cannot open model file ({exc.strerror})") from None
