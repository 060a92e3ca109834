"""Shared by the decode tests: a random tiny Llama in the GGUF loader's layout."""

from __future__ import annotations

from waferscale.model.config import ModelConfig
from waferscale.model.gguf_loader import ModelWeights, random_weights


def make_model(seed: int, *, n_layers: int = 2, d: int = 32, n_heads: int = 4, n_kv: int = 2,
               ffn: int = 64, vocab: int = 50) -> tuple[ModelConfig, ModelWeights]:
    """A random Llama (tied embeddings) in the loader's layout."""
    cfg = ModelConfig(architecture="llama", n_layers=n_layers, hidden_size=d, n_heads=n_heads,
                      n_kv_heads=n_kv, head_dim=d // n_heads, ffn_size=ffn, rope_base=10000.0,
                      rms_eps=1e-5, vocab_size=vocab, context_length=64, tied_embeddings=True)
    return cfg, random_weights(cfg, seed)
