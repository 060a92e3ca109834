"""Helpers for the model tests: tiny synthetic GGUF files written with ``gguf.GGUFWriter``.

:func:`write_tiny_gguf` writes a small but complete llama GGUF (2 layers, width 32,
grouped-query attention, a byte-level BPE vocabulary with ChatML control tokens); keyword
arguments break it in controlled ways for the error tests. (A module with a unique name rather
than ``conftest`` so that test files can import it unambiguously.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np

from waferscale.model.tokenizer import byte_to_unicode

TINY = dict(n_layers=2, hidden=32, n_heads=4, n_kv=2, ffn=64, context=64,
            rope_base=10000.0, eps=1e-5)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TINY_CONTROL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "1 2"]


def tiny_vocab() -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of the synthetic byte-level BPE vocabulary."""
    tokens = list(TINY_CONTROL) + [byte_to_unicode()[b] for b in range(256)]
    tokens += ["".join(m.split(" ")) for m in TINY_MERGES]
    types = [3] * len(TINY_CONTROL) + [1] * (len(tokens) - len(TINY_CONTROL))
    return tokens, types, list(TINY_MERGES)


def tiny_tensors(seed: int = 0, *, tied: bool = True, n_layers: int = TINY["n_layers"]
                 ) -> dict[str, np.ndarray]:
    """Random float32 weights in GGUF numpy order (matrices ``(out, in)``)."""
    rng = np.random.default_rng(seed)
    d, f = TINY["hidden"], TINY["ffn"]
    hd = d // TINY["n_heads"]
    q, kv = d, TINY["n_kv"] * hd
    vocab = len(tiny_vocab()[0])

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)

    t = {"token_embd.weight": mat(vocab, d), "output_norm.weight": norm()}
    if not tied:
        t["output.weight"] = mat(vocab, d)
    for i in range(n_layers):
        t[f"blk.{i}.attn_norm.weight"] = norm()
        t[f"blk.{i}.attn_q.weight"] = mat(q, d)
        t[f"blk.{i}.attn_k.weight"] = mat(kv, d)
        t[f"blk.{i}.attn_v.weight"] = mat(kv, d)
        t[f"blk.{i}.attn_output.weight"] = mat(d, q)
        t[f"blk.{i}.ffn_norm.weight"] = norm()
        t[f"blk.{i}.ffn_gate.weight"] = mat(f, d)
        t[f"blk.{i}.ffn_up.weight"] = mat(f, d)
        t[f"blk.{i}.ffn_down.weight"] = mat(d, f)
    return t


def write_tiny_gguf(path: Path, *, arch: str = "llama",
                    qtype: gguf.GGMLQuantizationType = gguf.GGMLQuantizationType.F32,
                    tied: bool = True, drop: tuple[str, ...] = (),
                    replace: dict[str, np.ndarray] | None = None,
                    meta: dict[str, Any] | None = None, tokenizer_model: str = "gpt2",
                    pre: str = "smollm", chat_template: str | None = CHATML_TEMPLATE,
                    seed: int = 0, n_layers: int = TINY["n_layers"]) -> dict[str, np.ndarray]:
    """Write a tiny llama GGUF; returns the float32 tensors before quantization.

    ``qtype`` applies to the 2-D tensors (norms stay F32, as llama.cpp writes them); ``drop``
    leaves tensors out; ``replace`` writes the given arrays as-is (any dtype); ``meta`` adds or
    overrides metadata keys (a value ``None`` deletes the key).
    """
    tensors = tiny_tensors(seed, tied=tied, n_layers=n_layers)
    tokens, types, merges = tiny_vocab()
    w = gguf.GGUFWriter(str(path), arch)
    keys: dict[str, Any] = {
        f"{arch}.block_count": n_layers, f"{arch}.context_length": TINY["context"],
        f"{arch}.embedding_length": TINY["hidden"], f"{arch}.feed_forward_length": TINY["ffn"],
        f"{arch}.attention.head_count": TINY["n_heads"],
        f"{arch}.attention.head_count_kv": TINY["n_kv"],
        f"{arch}.rope.freq_base": TINY["rope_base"],
        f"{arch}.attention.layer_norm_rms_epsilon": TINY["eps"],
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
    }
    keys.update(meta or {})
    for key, value in keys.items():
        if value is None:
            continue
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_string(key, value)
    w.add_string("tokenizer.ggml.model", tokenizer_model)
    w.add_string("tokenizer.ggml.pre", pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    for name, array in tensors.items():
        if name in drop:
            continue
        if replace and name in replace:
            w.add_tensor(name, replace[name])
        elif array.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            data = gguf.quants.quantize(array, qtype)
            w.add_tensor(name, data, raw_dtype=qtype)
        else:
            w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors
