"""Sampling from the k best tokens only: the same candidates, and the token llama.cpp picks."""

from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from sutazai.catalog import ModelCatalog
from sutazai.engines.cpu_kernels import plain_model_params
from sutazai.engines.model_files import resolve_model_path
from sutazai.engines.top_k import TopKSampling, top_k_candidates
from sutazai.settings import PROJECT_ROOT


@pytest.mark.parametrize("size", [262_144, 151_943, 4_096])
def test_the_candidates_are_the_k_largest_logits(size):
    rng = np.random.default_rng(size)
    for k in (1, 40, 64):
        logits = (rng.standard_normal(size) * 4).astype(np.float32)
        logits[rng.integers(0, size, 50)] = -np.inf  # masked tokens
        logits[-1] = logits.max() + 1  # the best in the tail the blocks leave out
        picked = top_k_candidates(logits, k)
        assert picked is not None
        assert sorted(picked.tolist()) == sorted(np.argsort(logits)[-k:].tolist())


def test_logits_holding_nan_leave_the_choice_to_llama_cpp():
    logits = np.full(8_192, np.nan, dtype=np.float32)
    assert top_k_candidates(logits, 64) is None


class Model:
    """The shipped GGUF on llama.cpp's plain kernels, one thread, a KV stream per sequence."""

    def __init__(self, path: Path, sequences: int) -> None:
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), plain_model_params())
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = 512 * sequences, 512, 512
        params.n_seq_max, params.n_threads, params.n_threads_batch = sequences, 1, 1
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(self, rows: list[tuple[int, int, int]]) -> None:
        """(token, position, sequence) rows, logits for each."""
        for i, (token, pos, seq) in enumerate(rows):
            self.batch.token[i], self.batch.pos[i], self.batch.logits[i] = token, pos, 1
            self.batch.n_seq_id[i], self.batch.seq_id[i][0] = 1, seq
        self.batch.n_tokens = len(rows)
        assert llama_cpp.llama_decode(self.ctx, self.batch) == 0

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    spec = ModelCatalog.load(PROJECT_ROOT / "models").get("gemma3-270m")
    loaded = Model(resolve_model_path(spec, tmp_path_factory.mktemp("models")), 4)
    yield loaded
    loaded.close()


def chain(seed: int, temperature: float) -> object:
    """Gemma's sampling as the batched engine builds it: top-k 64, top-p, temperature, seed; or greedy."""
    made = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    samplers = [llama_cpp.llama_sampler_init_greedy()]
    if temperature > 0:
        samplers = [
            llama_cpp.llama_sampler_init_top_k(64),
            llama_cpp.llama_sampler_init_top_p(0.95, 1),
            llama_cpp.llama_sampler_init_temp(temperature),
            llama_cpp.llama_sampler_init_dist(seed),
        ]
    for sampler in samplers:
        llama_cpp.llama_sampler_chain_add(made, sampler)
    return made


@pytest.mark.parametrize("temperature", [0.7, 1.5, 0.0])
def test_the_top_k_candidates_give_the_token_llama_cpp_samples_for_the_seed(model, temperature):
    sampling = TopKSampling(model.n_vocab, 64)
    assert sampling.usable
    ours = [chain(100 + s, temperature) for s in range(4)]
    theirs = [chain(100 + s, temperature) for s in range(4)]
    prompts = [[2, 1596, 3324, 496, 990, 236764, 300 + 17 * s] for s in range(4)]
    for s, prompt in enumerate(prompts):
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(model.ctx), s, -1, -1)
        model.decode([(token, pos, s) for pos, token in enumerate(prompt)])
    following = [prompt[-1] for prompt in prompts]
    pos = len(prompts[0])
    for _ in range(24):
        model.decode([(token, pos, s) for s, token in enumerate(following)])
        pos += 1
        expected = [llama_cpp.llama_sampler_sample(theirs[s], model.ctx, s) for s in range(4)]
        assert [sampling.sample(ours[s], model.ctx, s) for s in range(4)] == expected
        following = expected
    for made in ours + theirs:
        llama_cpp.llama_sampler_free(made)
