"""Shared by the decode tests: a random tiny Llama in the GGUF loader's layout."""

from __future__ import annotations

import numpy as np

from waferscale.model.config import ModelConfig
from waferscale.model.gguf_loader import LayerWeights, ModelWeights


def make_model(seed: int, *, n_layers: int = 2, d: int = 32, n_heads: int = 4, n_kv: int = 2,
               ffn: int = 64, vocab: int = 50) -> tuple[ModelConfig, ModelWeights]:
    """A random Llama (tied embeddings) in the loader's layout."""
    cfg = ModelConfig(architecture="llama", n_layers=n_layers, hidden_size=d, n_heads=n_heads,
                      n_kv_heads=n_kv, head_dim=d // n_heads, ffn_size=ffn, rope_base=10000.0,
                      rms_eps=1e-5, vocab_size=vocab, context_length=64, tied_embeddings=True)
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)

    def gain() -> np.ndarray:
        return (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)

    q, kv = cfg.q_dim, cfg.kv_dim
    layers = [LayerWeights(attn_norm=gain(), wq=mat(d, q), wk=mat(d, kv), wv=mat(d, kv),
                           wo=mat(q, d), ffn_norm=gain(), w_gate=mat(d, ffn), w_up=mat(d, ffn),
                           w_down=mat(ffn, d)) for _ in range(n_layers)]
    embd = mat(vocab, d)
    return cfg, ModelWeights(token_embd=embd, output_norm=gain(), output=embd, layers=layers)
