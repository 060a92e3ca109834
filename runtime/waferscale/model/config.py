"""Model hyper-parameters read from GGUF metadata.

:class:`ModelConfig` is the small, frozen description of a Llama-family decoder that every
backend (the NumPy reference, later the wafer path) sizes itself from. It is built from the
decoded GGUF key/value metadata by :func:`config_from_metadata`; keys are looked up under the
file's ``general.architecture`` prefix, as llama.cpp writes them (``llama.block_count``, ...).

Limits: only the plain ``llama`` architecture is accepted (RMSNorm, rotary position embedding
over the whole head, grouped-query attention, SwiGLU MLP). Files that ask for RoPE scaling or a
partial rotary dimension are rejected with :class:`~waferscale.model.errors.ModelError` rather
than decoded wrongly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from waferscale.model.errors import ModelError

log = logging.getLogger(__name__)

#: ``general.architecture`` values this package can decode.
SUPPORTED_ARCHITECTURES = ("llama",)


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a Llama-family decoder.

    Attributes:
        architecture: the GGUF ``general.architecture`` string (``"llama"``).
        n_layers: number of transformer blocks.
        hidden_size: model width (embedding length).
        n_heads: query heads per layer.
        n_kv_heads: key/value heads per layer (``n_heads`` for plain multi-head attention);
            query head ``h`` reads key/value head ``h // (n_heads // n_kv_heads)``.
        head_dim: width of one head, ``hidden_size // n_heads``.
        ffn_size: inner width of the SwiGLU MLP.
        rope_base: RoPE frequency base (theta).
        rms_eps: epsilon added to the mean square in RMSNorm.
        vocab_size: number of token ids (rows of the embedding matrix).
        context_length: the longest sequence the model was trained for.
        tied_embeddings: True when the output head reuses the token embedding matrix
            (the file has no ``output.weight`` tensor).
    """

    architecture: str
    n_layers: int
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_size: int
    rope_base: float
    rms_eps: float
    vocab_size: int
    context_length: int
    tied_embeddings: bool

    @property
    def q_dim(self) -> int:
        """Width of the concatenated query heads (``n_heads * head_dim``)."""
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the concatenated key (or value) heads (``n_kv_heads * head_dim``)."""
        return self.n_kv_heads * self.head_dim

    @property
    def group_size(self) -> int:
        """Query heads that share one key/value head."""
        return self.n_heads // self.n_kv_heads

    def parameter_count(self) -> int:
        """Number of weights (embedding counted once when tied)."""
        per_layer = (2 * self.hidden_size                      # the two norms
                     + self.hidden_size * (self.q_dim + 2 * self.kv_dim)
                     + self.q_dim * self.hidden_size
                     + 3 * self.hidden_size * self.ffn_size)
        head = 0 if self.tied_embeddings else self.vocab_size * self.hidden_size
        return (self.vocab_size * self.hidden_size + self.n_layers * per_layer
                + self.hidden_size + head)


def _int(meta: Mapping[str, Any], key: str, default: int | None = None) -> int:
    if key not in meta:
        if default is None:
            raise ModelError(f"GGUF metadata lacks the required key {key!r}")
        return default
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelError(f"GGUF metadata key {key!r} must be a positive integer, got {value!r}")
    return value


def _float(meta: Mapping[str, Any], key: str, default: float) -> float:
    value = meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ModelError(f"GGUF metadata key {key!r} must be a positive number, got {value!r}")
    return float(value)


def config_from_metadata(meta: Mapping[str, Any], *, tensor_names: set[str]) -> ModelConfig:
    """Build a :class:`ModelConfig` from decoded GGUF metadata.

    Args:
        meta: GGUF key/value metadata, decoded to Python values
            (see :func:`waferscale.model.gguf_loader.read_metadata`).
        tensor_names: names of the tensors in the file (decides ``tied_embeddings`` and
            detects features this decoder does not implement).

    Raises:
        ModelError: unsupported architecture, missing or inconsistent keys, RoPE scaling.
    """
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelError("GGUF metadata lacks 'general.architecture'; is this a model file?")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelError(f"unsupported model architecture {arch!r}; "
                         f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    hidden = _int(meta, f"{arch}.embedding_length")
    n_heads = _int(meta, f"{arch}.attention.head_count")
    n_kv = _int(meta, f"{arch}.attention.head_count_kv", n_heads)
    if hidden % n_heads:
        raise ModelError(f"embedding length {hidden} is not divisible by {n_heads} heads")
    if n_heads % n_kv:
        raise ModelError(f"{n_heads} query heads cannot be grouped over {n_kv} key/value heads")
    head_dim = hidden // n_heads
    if head_dim % 2:
        raise ModelError(f"head width {head_dim} is odd; rotary embedding needs pairs")
    for key in (f"{arch}.attention.key_length", f"{arch}.attention.value_length"):
        if key in meta and _int(meta, key) != head_dim:
            raise ModelError(f"{key}={meta[key]} differs from hidden/heads={head_dim}; "
                             "decoupled head widths are not supported")
    rope_dims = _int(meta, f"{arch}.rope.dimension_count", head_dim)
    if rope_dims != head_dim:
        raise ModelError(f"partial rotary embedding ({rope_dims} of {head_dim} dims) "
                         "is not supported")
    scaling = meta.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "") or "rope_freqs.weight" in tensor_names:
        raise ModelError("RoPE frequency scaling is not supported by the reference decoder")
    if "token_embd.weight" not in tensor_names:
        raise ModelError("the file has no 'token_embd.weight' tensor")
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab_default = len(tokens) if isinstance(tokens, list) and tokens else None
    config = ModelConfig(
        architecture=arch,
        n_layers=_int(meta, f"{arch}.block_count"),
        hidden_size=hidden,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        ffn_size=_int(meta, f"{arch}.feed_forward_length"),
        rope_base=_float(meta, f"{arch}.rope.freq_base", 10000.0),
        rms_eps=_float(meta, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5),
        vocab_size=_int(meta, f"{arch}.vocab_size", vocab_default),
        context_length=_int(meta, f"{arch}.context_length", 2048),
        tied_embeddings="output.weight" not in tensor_names,
    )
    log.debug("model config: %s", config)
    return config
