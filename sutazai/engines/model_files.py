"""Where a model's weights live on disk: a path, or a package that ships them."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from sutazai.catalog import ModelSpec


def resolve_model_path(spec: ModelSpec, data_dir: Path) -> Path:
    """A local file for `spec`; packaged GGUFs are assembled once under the data folder.

    Assembly writes to a temporary name then renames, so replicas starting at
    the same time never read a half-written file.
    """
    if spec.source.path is not None:
        path = Path(spec.source.path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"model {spec.name}: {path} does not exist")
        return path
    assert spec.source.package is not None  # the model file validator wants a path or a package
    package = importlib.import_module(spec.source.package)
    target = data_dir / "models" / f"{spec.name}.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    package.assemble(partial, overwrite=True)
    os.replace(partial, target)
    return target
