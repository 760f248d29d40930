"""A sentence embedding engine: fastembed running a local ONNX file, nothing downloaded.

fastembed's named models come from the Hugging Face hub. A local model is a custom model
(`TextEmbedding.add_custom_model`: pooling, normalisation, dimension) loaded with
`specific_model_path`, a folder holding the ONNX file, `tokenizer.json` and
`tokenizer_config.json`. `model_folder` builds that folder under the data folder from
symlinks to the installed files, plus a `tokenizer_config.json` that sets the truncation
length to the model file's `max_input_tokens` (the shipped MiniLM tokenizer says 128,
the model takes 256).

Token counts come from a second copy of the tokenizer with neither truncation nor
padding: the ingress refuses inputs longer than the model's limit (as OpenAI does)
instead of embedding a silently truncated text.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

from sutazai.catalog import EmbedderSpec
from sutazai.schemas.embeddings import EmbeddingResult

logger = logging.getLogger("sutazai.embeddings")

MODEL_FILE = "model.onnx"
SUB_BATCH = 32  # texts per ONNX run; inputs are sorted by length first so a batch pads little
_register_lock = threading.Lock()


def onnx_path(spec: EmbedderSpec) -> Path:
    """The ONNX file: `source.path` (a file, or a folder holding model.onnx), or the package's."""
    if spec.source.path is not None:
        path = Path(spec.source.path).expanduser()
        path = path / MODEL_FILE if path.is_dir() else path
    else:
        assert spec.source.package is not None  # the validator wants a path or a package
        package = importlib.import_module(spec.source.package)
        locate = getattr(package, "model_path", None)
        path = Path(locate()) if callable(locate) else Path(str(package.__file__)).parent / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"embedding model {spec.name}: {path} does not exist")
    return path


def tokenizer_folder(spec: EmbedderSpec) -> Path:
    source = spec.tokenizer
    if source.path is not None:
        folder = Path(source.path).expanduser()
    else:
        assert source.package is not None
        folder = Path(str(importlib.import_module(source.package).__file__)).parent / source.subdir
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"embedding model {spec.name}: no tokenizer.json in {folder}")
    return folder


def _tokenizer_config(folder: Path, spec: EmbedderSpec) -> dict:
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config.pop("max_length", None)
    config["model_max_length"] = spec.max_input_tokens
    if not config.get("pad_token"):
        padding = json.loads((folder / "tokenizer.json").read_text()).get("padding") or {}
        config["pad_token"] = padding.get("pad_token", "[PAD]")
    return config


def model_folder(spec: EmbedderSpec, cache_dir: Path) -> Path:
    """The folder fastembed loads: named after what it holds, so a changed model file gets
    a new folder, and built under a temporary name so replicas starting together never see
    half of one."""
    onnx, tokenizers = onnx_path(spec), tokenizer_folder(spec)
    config = _tokenizer_config(tokenizers, spec)
    key = json.dumps([str(onnx), str(tokenizers), config], sort_keys=True)
    target = cache_dir / f"{spec.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (target / "tokenizer_config.json").is_file():
        return target
    partial = cache_dir / f".{target.name}.partial-{os.getpid()}-{threading.get_ident()}"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / MODEL_FILE).unlink(missing_ok=True)
    (partial / MODEL_FILE).symlink_to(onnx)
    for extra in ("tokenizer.json", "special_tokens_map.json", "vocab.txt", "config.json"):
        if (tokenizers / extra).is_file():
            (partial / extra).unlink(missing_ok=True)
            (partial / extra).symlink_to(tokenizers / extra)
    (partial / "tokenizer_config.json").write_text(json.dumps(config))
    try:
        partial.rename(target)
    except OSError:  # another replica made it first
        for child in partial.iterdir():
            child.unlink()
        partial.rmdir()
    return target


def _register(spec: EmbedderSpec) -> str:
    """Registers the spec as a fastembed custom model (once per process); returns its name."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    name = f"sutazai-local/{spec.name}-{spec.pooling}-{int(spec.normalize)}-{spec.dimensions}"
    with _register_lock:
        if any(m["model"] == name for m in TextEmbedding.list_supported_models()):
            return name
        TextEmbedding.add_custom_model(
            name,
            pooling=PoolingType.MEAN if spec.pooling == "mean" else PoolingType.CLS,
            normalization=spec.normalize,
            sources=ModelSource(url="file:///nonexistent"),  # never used: the model path is given
            dim=spec.dimensions,
            model_file=MODEL_FILE,
            description=f"{spec.name} from local files",
        )
    return name


class FastEmbedEngine:
    """One loaded model. `embed` and `count_tokens` are blocking (run them in a thread)."""

    def __init__(self, spec: EmbedderSpec, cache_dir: Path) -> None:
        from fastembed import TextEmbedding
        from tokenizers import Tokenizer

        self.spec = spec
        folder = model_folder(spec, cache_dir)
        self.model = TextEmbedding(_register(spec), specific_model_path=str(folder), threads=spec.threads)
        self.counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.counter.no_truncation()
        self.counter.no_padding()
        dimension = len(next(iter(self.model.embed(["dimension check"]))))
        if dimension != spec.dimensions:
            raise ValueError(
                f"embedding model {spec.name}: the model gives {dimension} dimensions, its file says {spec.dimensions}"
            )

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text, [CLS]/[SEP] included, without truncation."""
        return [len(e.ids) for e in self.counter.encode_batch(texts)] if texts else []

    def embed(self, texts: list[str]) -> EmbeddingResult:
        """Vectors for `texts` (each truncated to max_input_tokens) and their untruncated token counts."""
        if not texts:
            return EmbeddingResult.model_construct(vectors=[], tokens=[])
        tokens = self.count_tokens(texts)
        order = np.argsort(tokens, kind="stable")  # similar lengths together: less padding per run
        sorted_texts = [texts[i] for i in order]
        vectors = np.empty((len(texts), self.spec.dimensions), dtype=np.float32)
        vectors[order] = np.stack(list(self.model.embed(sorted_texts, batch_size=SUB_BATCH)))
        return EmbeddingResult.model_construct(vectors=vectors.tolist(), tokens=tokens)
