#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` (the peer of bench/fast_path.py) from the llama.cpp
# vendored in the llama-cpp-python sdist of the installed version, so both run the same
# llama.cpp. ~25 min on 2 cores. Prints the binary's path; a second run reuses it.
#   usage: bench/peers/build_llama_server.sh [OUT_DIR]   (default .data/peers)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-.data/peers}"
PY="${PY:-.venv/bin/python}"
VERSION="$($PY -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null || echo 0.3.36)"
BIN="$OUT/llama-server-$VERSION"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$OUT/src"
SRC="$OUT/src/llama_cpp_python-$VERSION"
if [ ! -d "$SRC" ]; then
  $PY -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$OUT/src" >&2
  tar -xzf "$OUT/src/llama_cpp_python-$VERSION.tar.gz" -C "$OUT/src"
fi
cmake -S "$SRC/vendor/llama.cpp" -B "$SRC/build-server" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$SRC/build-server" --target llama-server -j "$(nproc)" >&2
cp "$SRC/build-server/bin/llama-server" "$BIN"
echo "$BIN"
