"""Which llama.cpp CPU kernels our engines run: the plain ones, never the "extra buffer types".

llama.cpp's extra CPU buffer types repack the weights for other matmul kernels: CPU_REPACK
(AVX2/NEON GEMM tiles) and, where the CPU reports Intel AMX, the AMX tile kernels. Both are
on by default (llama-server's `--repack`), and our engines keep them off, for two reasons:

* a batch of 4+ rows then runs another GEMM than a batch of 1-3, so a sequence's logits, and
  its sampled text for a seed, depend on what else is in its batch (the batched engine's
  promise is the same text alone or batched; see `LlamaBatchEngine`);
* on a VM whose CPU reports AMX that the hypervisor does not run (the 2-core machines this
  project is built on, Sapphire Rapids under Firecracker), llama.cpp takes the AMX kernels
  and the process dies of SIGILL at its first decode (`tilezero`): llama-server too,
  unless given `--no-repack`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import llama_cpp
import llama_cpp.llama

_DEFAULT_MODEL_PARAMS = llama_cpp.llama_model_default_params  # the binding itself, never the swapped one
_DEFAULTS_SWAP = threading.Lock()  # one constructor at a time sees the swapped defaults


def plain_model_params() -> Any:
    """llama.cpp's default model params with the extra buffer types off."""
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
