"""Compare the NumPy reference decoder with independent implementations of the same GGUF file.

Run by hand (not part of CI; the comparison libraries are not project dependencies)::

    pip install torch==2.13.0 transformers accelerate    # Hugging Face: dequantizes itself
    pip install llama-cpp-python                          # llama.cpp: compiles from source
    python -m waferscale.model.compare_independent [--model PATH] [--max-new-tokens N]

Either library may be missing; its section is then skipped (``--skip-transformers`` /
``--skip-llama-cpp`` skip one on purpose). What is compared:

* ``transformers`` (``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)``, float32): it
  dequantizes the file with its own code, un-permutes the Q/K weights and uses the Hugging Face
  (rotate-half) RoPE. Logits at every position of prompt + continuation (max abs diff, top-1
  agreement), greedy tokens, and the chat template rendered by Jinja vs ours.
* ``llama.cpp`` (``llama_cpp.Llama``): tokenization of a varied text suite, and logits/greedy
  tokens, twice: on the file itself (llama.cpp multiplies with the quantized weights directly,
  activations quantized to 8 bits, so its logits differ by more than float32 rounding) and on a
  copy of the file with every tensor dequantized to F32 (then the arithmetic is comparable).
* The reference with the *wrong* RoPE layout (``halves`` on GGUF weights), to show that the
  comparison would catch a convention error.

Prints a Markdown report on stdout (recorded in ``docs/reference-decoder.md``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from waferscale.model.errors import ModelError
from waferscale.model.gguf_loader import LoadedModel, load_model
from waferscale.model.reference import ReferenceModel, greedy_tokens
from waferscale.model.tokenizer import GGUFTokenizer

log = logging.getLogger(__name__)

#: (label, chat?, text) prompts decoded by every implementation.
PROMPTS: list[tuple[str, bool, str]] = [
    ("raw: capital", False, "The capital of France is"),
    ("raw: story", False, "Once upon a time, in a small village by the sea,"),
    ("raw: code", False, "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("chat: capital", True, "What is the capital of France?"),
    ("chat: python", True, "Write a Python function that reverses a string."),
    ("chat: numbers", True, "What is 17 times 23? Answer with the number only."),
]

#: Texts whose tokenization is compared with llama.cpp's.
TOKENIZER_TEXTS: list[str] = [
    "Hello, world!",
    "The year 2024 had 366 days; pi ~ 3.14159.",
    "   leading spaces, trailing   \n",
    "tabs\tand\nnewlines\r\n\n\nruns",
    "naïve café — déjà vu. Übergrößenträger!",
    "日本語のテキストと中文字符，한국어 텍스트",
    "emoji: 🎉🚀👍🏽 and ZWJ 👨‍👩‍👧",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "<|im_start|>user\nnot special here<|im_end|>",
    "can't won't I'll we've they're she'd it's",
    "MixedCASE camelCase snake_case kebab-case SCREAMING_CASE",
    "",
]

CHAT_CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be terse."},
     {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "and 3+3?"}],
]


@dataclass
class Case:
    """One prompt: its token ids and the reference's greedy continuation."""

    label: str
    prompt_ids: list[int]
    ref_tokens: list[int]


def _prompt_ids(tok: GGUFTokenizer, chat: bool, text: str) -> list[int]:
    return tok.encode_chat([{"role": "user", "content": text}]) if chat else tok.encode(text)


def _prefix_agreement(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _logit_stats(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float, float]:
    """(max abs diff, max abs diff / max |logit|, top-1 agreement fraction) over positions."""
    diff = float(np.max(np.abs(ours - theirs)))
    scale = float(np.max(np.abs(theirs)))
    top1 = float(np.mean(np.argmax(ours, axis=-1) == np.argmax(theirs, axis=-1)))
    return diff, diff / scale, top1


def _reference_logits(ref: ReferenceModel, ids: Sequence[int]) -> np.ndarray:
    cache = ref.new_cache(len(ids))
    return ref.forward(ids, cache, all_logits=True)


def compare_transformers(loaded: LoadedModel, ref: ReferenceModel, cases: list[Case],
                         max_new: int) -> list[str]:
    """Section of the report for Hugging Face transformers."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        return [f"transformers section skipped: {err} "
                "(pip install torch==2.13.0 transformers accelerate)"]
    out = ["## transformers", ""]
    t0 = time.perf_counter()
    hf = AutoModelForCausalLM.from_pretrained(str(loaded.path.parent), gguf_file=loaded.path.name,
                                              dtype=torch.float32)
    hf.eval()
    out.append(f"transformers {__import__('transformers').__version__}, torch {torch.__version__},"
               f" loaded in {time.perf_counter() - t0:.1f} s (float32)")
    out.append("")
    out.append("| prompt | positions | max abs logit diff | relative | top-1 agree | "
               "greedy tokens equal |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    worst = 0.0
    for case in cases:
        seq = case.prompt_ids + case.ref_tokens
        ours = _reference_logits(ref, seq)
        with torch.no_grad():
            theirs = hf(torch.tensor([seq])).logits[0].float().numpy()
        diff, rel, top1 = _logit_stats(ours, theirs)
        worst = max(worst, diff)
        with torch.no_grad():
            gen = hf.generate(torch.tensor([case.prompt_ids]), max_new_tokens=max_new,
                              do_sample=False, eos_token_id=sorted(loaded.tokenizer.stop_ids),
                              pad_token_id=loaded.tokenizer.eos_id)
        hf_tokens = gen[0, len(case.prompt_ids):].tolist()
        same = _greedy_verdict(ours, case, hf_tokens, loaded.tokenizer)
        out.append(f"| {case.label} | {len(seq)} | {diff:.2e} | {rel:.1e} | {top1:.0%} | {same} |")
    out += ["", f"worst max abs logit diff: {worst:.2e}", ""]

    hf_tok = AutoTokenizer.from_pretrained(str(loaded.path.parent), gguf_file=loaded.path.name)
    same_template = 0
    for conv in CHAT_CONVERSATIONS:
        jinja = hf_tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        mine = loaded.tokenizer.chat_text(conv)
        same_template += int(jinja == mine)
        if jinja != mine:
            out.append(f"chat template MISMATCH:\n  jinja: {jinja!r}\n  ours:  {mine!r}")
    out.append(f"chat template (GGUF tokenizer.chat_template rendered by transformers' Jinja) "
               f"equals ours on {same_template}/{len(CHAT_CONVERSATIONS)} conversations")
    tok_same = sum(hf_tok.encode(t, add_special_tokens=False) == loaded.tokenizer.encode(t)
                   for t in TOKENIZER_TEXTS)
    out.append(f"transformers' GGUF tokenizer agrees on {tok_same}/{len(TOKENIZER_TEXTS)} texts "
               "(it omits the digit-splitting pre-tokenizer, so texts with multi-digit numbers "
               "differ; llama.cpp is the authority for GGUF tokenization)")
    return out


def write_float32_copy(src: Path, dst: Path) -> None:
    """Write ``src`` again with every tensor dequantized to F32 (same metadata otherwise).

    llama.cpp then computes with exactly the float32 weights the reference uses, so its logits
    can be compared at float32-rounding level rather than through its quantized arithmetic.
    """
    import gguf

    from waferscale.model.gguf_loader import dequantize_tensor, open_gguf

    reader = open_gguf(src)
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    writer = gguf.GGUFWriter(dst, arch)
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = fld.types[0]
        sub = fld.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = fld.contents()
        if key == "general.file_type":
            value = int(gguf.LlamaFileType.ALL_F32)
        writer.add_key_value(key, value, vtype, sub)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, dequantize_tensor(tensor, src))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def compare_tokenization(llm: object, tok: GGUFTokenizer) -> list[str]:
    """llama.cpp's tokenizer vs ours on :data:`TOKENIZER_TEXTS`."""
    out: list[str] = []
    ok = 0
    for text in TOKENIZER_TEXTS:
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)  # type: ignore[attr-defined]
        special = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)  # type: ignore[attr-defined]
        mine = tok.encode(text)
        problems = []
        if theirs != mine:
            problems.append(f"plain: llama.cpp {theirs} vs ours {mine}")
        if special != tok.encode(text, parse_special=True):
            problems.append("with special tokens parsed")
        detok = llm.detokenize(mine).decode("utf-8", errors="replace")  # type: ignore[attr-defined]
        if detok != tok.decode(mine):
            problems.append("detokenization")
        if problems:
            out.append(f"tokenization MISMATCH on {text!r}: {'; '.join(problems)}")
        else:
            ok += 1
    out.append(f"tokenization (plain and with special tokens parsed) and detokenization agree "
               f"with llama.cpp on {ok}/{len(TOKENIZER_TEXTS)} texts")
    return out


def compare_llama_cpp(loaded: LoadedModel, cases: list[Case], max_new: int, *,
                      float32_copy: bool) -> list[str]:
    """Section of the report for llama.cpp (llama-cpp-python), on the file or its F32 copy."""
    try:
        import llama_cpp
    except ImportError as err:
        return [f"llama.cpp section skipped: {err} (pip install llama-cpp-python)"]
    tok = loaded.tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        path = loaded.path
        if float32_copy:
            path = Path(tmp) / "float32.gguf"
            write_float32_copy(loaded.path, path)
        # With the F32 copy the KV cache is F32 too (llama.cpp's default cache type is F16).
        f32_cache = 0 if float32_copy else None  # 0 = GGML_TYPE_F32; None = default F16
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, logits_all=True,
                              verbose=False, n_threads=2, seed=0, type_k=f32_cache,
                              type_v=f32_cache)
        if float32_copy:
            out = ["## llama.cpp on a float32 copy of the file", "",
                   f"llama-cpp-python {llama_cpp.__version__}; every tensor dequantized to F32 "
                   "with gguf.quants and an F32 KV cache, so llama.cpp computes with the "
                   "reference's exact weights in float32", ""]
        else:
            out = ["## llama.cpp on the quantized file", "",
                   f"llama-cpp-python {llama_cpp.__version__}; llama.cpp multiplies Q4_1/Q8_0 "
                   "weights by activations quantized to 8 bits, so logits differ by more than "
                   "float32 rounding", ""]
            out += compare_tokenization(llm, tok) + [""]
        out.append("| prompt | positions | max abs logit diff | top-1 agree "
                   "| greedy tokens equal |")
        out.append("| --- | --- | --- | --- | --- |")
        ref = ReferenceModel(loaded.config, loaded.weights)
        for case in cases:
            seq = case.prompt_ids + case.ref_tokens
            llm.reset()
            llm.eval(seq)
            theirs = np.array(llm.scores[: len(seq)], dtype=np.float32)
            ours = _reference_logits(ref, seq)
            diff, _, top1 = _logit_stats(ours, theirs)
            llm.reset()
            llm.eval(case.prompt_ids)
            greedy: list[int] = []
            for _ in range(max_new):
                nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
                greedy.append(nxt)
                if nxt in tok.stop_ids or len(greedy) == max_new:
                    break
                llm.eval([nxt])
            out.append(f"| {case.label} | {len(seq)} | {diff:.2e} | {top1:.0%} | "
                       f"{_greedy_verdict(ours, case, greedy, tok)} |")
        del llm
    return out


def _greedy_verdict(ours: np.ndarray, case: Case, theirs: list[int], tok: GGUFTokenizer) -> str:
    """'yes', or where the greedy runs part and how close our top-2 logits were there."""
    if theirs == case.ref_tokens:
        return "yes"
    at = _prefix_agreement(case.ref_tokens, theirs)
    row = ours[len(case.prompt_ids) - 1 + at]
    top2 = np.sort(row)[-2:]
    other = tok.decode([theirs[at]]) if at < len(theirs) else "(stopped)"
    return (f"first {at} equal, then ours {tok.decode([case.ref_tokens[at]])!r} vs "
            f"{other!r} (our top-2 logit margin {top2[1] - top2[0]:.2f})")


def compare_wrong_rope(loaded: LoadedModel, cases: list[Case]) -> list[str]:
    """How far the 'halves' RoPE layout (wrong for GGUF weights) is from the reference."""
    wrong = ReferenceModel(loaded.config, loaded.weights, rope_layout="halves")
    right = ReferenceModel(loaded.config, loaded.weights)
    out = ["## Wrong RoPE layout (control)", "",
           "| prompt | top-1 agreement with the reference | mean NLL right / wrong |",
           "| --- | --- | --- |"]
    for case in cases:
        seq = case.prompt_ids + case.ref_tokens
        a = _reference_logits(right, seq)
        b = _reference_logits(wrong, seq)
        top1 = float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))
        out.append(f"| {case.label} | {top1:.0%} | {_nll(a, seq):.2f} / {_nll(b, seq):.2f} |")
    return out


def _nll(logits: np.ndarray, seq: Sequence[int]) -> float:
    """Mean negative log-likelihood of ``seq[1:]`` under ``logits[:-1]`` (nats/token)."""
    x = logits[:-1].astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(seq) - 1), seq[1:]]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--skip-llama-cpp", action="store_true")
    args = parser.parse_args(argv)
    try:
        loaded = load_model(args.model, progress=False)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    ref = ReferenceModel.from_loaded(loaded)
    tok = loaded.tokenizer
    cases = []
    for label, chat, text in PROMPTS:
        ids = _prompt_ids(tok, chat, text)
        cases.append(Case(label, ids, greedy_tokens(ref, ids, args.max_new_tokens, tok.stop_ids)))
    report = [f"# Reference vs independent implementations: {loaded.name} ({loaded.path.name})",
              "", f"greedy decoding, up to {args.max_new_tokens} new tokens, stop at "
              f"{sorted(tok.stop_ids)}", ""]
    for case in cases:
        report.append(f"- {case.label}: {tok.decode(case.ref_tokens)!r}")
    report.append("")
    if not args.skip_transformers:
        report += compare_transformers(loaded, ref, cases, args.max_new_tokens) + [""]
    if not args.skip_llama_cpp:
        for f32 in (False, True):
            report += compare_llama_cpp(loaded, cases, args.max_new_tokens,
                                        float32_copy=f32) + [""]
    report += compare_wrong_rope(loaded, cases)
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
