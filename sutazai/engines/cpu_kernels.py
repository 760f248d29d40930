"""Which llama.cpp CPU kernels our engines run: the plain ones, the same for every batch size.

llama.cpp picks a matmul kernel by the shape of the batch, and two of its choices make a
sequence's logits (hence its sampled text for a seed) depend on what else is in its step.
Our engines turn both off:

* the "extra buffer types": CPU_REPACK (AVX2/NEON GEMM tiles: a batch of 4+ rows runs
  another GEMM than a batch of 1-3) and, where the CPU reports Intel AMX, the AMX tile
  kernels (on a VM whose CPU reports AMX that the hypervisor does not run, e.g. Sapphire
  Rapids under Firecracker, the process dies of SIGILL at its first decode: llama-server too,
  unless given `--no-repack`). Off through the model params (`use_extra_bufts`).
* ggml's tiled K-quant matmul (`ggml-cpu/tiled/tiled.cpp`), taken from 8 rows of a batch on
  (`ggml_tiled_min_batch`): 8 copies of one request decoding together all parted from the
  solo text within 40 tokens, 2 to 7 never did. Off through its switch, the environment
  variable `GGML_CPU_TILED_MM=0`, which ggml reads once per process at its first matmul; so
  a process that ran a tiled matmul before cannot turn it off. Measured here (2-core AMD EPYC,
  AVX2, bench/cpu_engine.py, 8 streams, two rounds each): 63.3 and 59.1 tok/s off against
  60.4 and 56.3 on; one stream never takes it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import llama_cpp
import llama_cpp.llama

_DEFAULT_MODEL_PARAMS = llama_cpp.llama_model_default_params  # the binding itself, never the swapped one
_DEFAULTS_SWAP = threading.Lock()  # one constructor at a time sees the swapped defaults


TILED_MATMUL_SWITCH = "GGML_CPU_TILED_MM"


def cpu_reports_amx() -> bool:
    """Whether this (Linux) CPU reports Intel AMX: llama.cpp's default kernels use it then, and
    where the hypervisor does not run it the process dies of SIGILL at its first decode."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return any(line.startswith("flags") and " amx_tile" in line for line in info)
    except OSError:
        return False


def plain_model_params() -> Any:
    """llama.cpp's default model params with the extra buffer types off; the tiled matmul goes
    off for the whole process (it must, before the first matmul: see the module docstring)."""
    os.environ[TILED_MATMUL_SWITCH] = "0"
    params = _DEFAULT_MODEL_PARAMS()
    params.use_extra_bufts = False
    return params


@contextlib.contextmanager
def plain_kernels_for_llama() -> Iterator[None]:
    """While open, a `llama_cpp.Llama` being constructed loads its model with `plain_model_params`.

    `Llama` builds its model params itself and has no argument for the extra buffer types;
    it reads the defaults from `llama_cpp.llama.llama_cpp`, which this swaps for the span."""
    module = llama_cpp.llama.llama_cpp  # the low-level bindings, as llama.py imported them
    with _DEFAULTS_SWAP:
        defaults = module.llama_model_default_params
        module.llama_model_default_params = plain_model_params
        try:
            yield
        finally:
            module.llama_model_default_params = defaults
