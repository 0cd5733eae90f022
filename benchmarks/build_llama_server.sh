#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from the llama.cpp tree vendored in the llama-cpp-python sdist.
#
# The binary then runs the same llama.cpp commit as the `llama_cpp` module of the virtualenv,
# which keeps the in-process and server figures of benchmarks/server_bench.py comparable.
#
# Usage:
#   benchmarks/build_llama_server.sh [PREFIX]
#
# Environment:
#   PYTHON                    interpreter whose pip downloads the sdist (default: .venv/bin/python
#                             of this repository, else python3)
#   LLAMA_CPP_PYTHON_VERSION  sdist version (default: the version of llama_cpp importable by
#                             PYTHON, so the server matches the in-process binding)
#   JOBS                      parallel compile jobs (default: nproc)
#   NICE                      niceness of the compile (default: 10; 0 disables)
#   SRC_DIR                   where the sdist is downloaded and unpacked (default: PREFIX/src)
#
# Result: PREFIX/bin/llama-server (default PREFIX: /work/llama-server), statically linked
# against ggml/llama (no libllama.so needed at run time). Point the package at it with
# `export LLAMA_SERVER_BIN=PREFIX/bin/llama-server` or put PREFIX/bin on PATH.
#
# Flags, and why:
#   CMAKE_BUILD_TYPE=Release   what scikit-build-core builds llama-cpp-python with
#   GGML_NATIVE=ON             llama-cpp-python's default when built from source on this host
#                              (-march=native): same SIMD kernels as the in-process binding
#   BUILD_SHARED_LIBS=OFF      one relocatable binary (llama-cpp-python builds shared libs
#                              because Python loads them; the kernels are the same)
#   LLAMA_CURL=OFF, LLAMA_OPENSSL=OFF
#                              no model download or HTTPS client: we only serve local files on
#                              127.0.0.1 (llama-cpp-python forces LLAMA_CURL=OFF too)
#   LLAMA_USE_PREBUILT_UI=OFF, LLAMA_BUILD_UI=OFF
#                              no Web UI download from Hugging Face and no npm at build time
#   LLAMA_BUILD_TESTS/EXAMPLES=OFF
#                              only the `llama-server` target is built
# A fresh 2-core machine takes about 10 minutes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
prefix="${1:-/work/llama-server}"
src_dir="${SRC_DIR:-$prefix/src}"
jobs="${JOBS:-$(nproc)}"
nice_level="${NICE:-10}"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
if [[ -z "${LLAMA_CPP_PYTHON_VERSION:-}" ]]; then
    LLAMA_CPP_PYTHON_VERSION="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')" || {
        echo "error: llama-cpp-python is not installed for $PYTHON; set LLAMA_CPP_PYTHON_VERSION" >&2
        exit 2
    }
fi
for tool in cmake c++ tar; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' not found on PATH" >&2; exit 2; }
done
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
run() { if [[ "$nice_level" != 0 ]]; then nice -n "$nice_level" "$@"; else "$@"; fi; }

version="$LLAMA_CPP_PYTHON_VERSION"
sdist="$src_dir/llama_cpp_python-$version.tar.gz"
tree="$src_dir/llama_cpp_python-$version"
mkdir -p "$src_dir" "$prefix/bin"

start=$(date +%s)
if [[ ! -f "$sdist" ]]; then
    echo "== downloading the llama-cpp-python $version sdist"
    "$PYTHON" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$src_dir"
fi
if [[ ! -f "$tree/vendor/llama.cpp/CMakeLists.txt" ]]; then
    tar -xzf "$sdist" -C "$src_dir"
fi
llama="$tree/vendor/llama.cpp"
build="$tree/build-server"

echo "== configuring $llama"
run cmake -S "$llama" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON

echo "== building llama-server with $jobs jobs"
run cmake --build "$build" --target llama-server -j "$jobs"

install -m 0755 "$build/bin/llama-server" "$prefix/bin/llama-server"
end=$(date +%s)
"$prefix/bin/llama-server" --version 2>&1 | head -n 3 || true
echo "== installed $prefix/bin/llama-server (llama-cpp-python $version) in $((end - start)) s"
