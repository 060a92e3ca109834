"""Compare the wafer-numerics reference with the float32 reference decoder on the golden prompts.

Run by hand (not a test; about a minute per prompt on two cores)::

    python -m waferscale.decode.compare_numerics [--model PATH] [--max-tokens 32]
                                                 [--W 48 --H 12 --H-head 64]

For each golden prompt (``simulator_tests/model/test_golden.py``: raw text or one user turn
through the chat template), the float32 reference (:mod:`waferscale.model.reference`) decodes
greedily up to ``--max-tokens`` new tokens (stopping at a stop token). On that sequence,
teacher-forced, three models give logits at every position:

* ``fp32``: the float32 reference;
* ``fp32/f16w``: the float32 reference on the f16-rounded weights (isolates the rounding of
  the weights from that of the activations);
* ``wafer``: :class:`waferscale.decode.numerics.WaferNumerics` on the grid.

Reported per prompt: top-1 agreement of the next-token predictions (wafer vs fp32), the
largest |logit difference| (wafer vs fp32, wafer vs fp32/f16w, and the logits' range for
scale), and whether the wafer's own greedy continuation equals the reference's (else the first
index where they part). Prints Markdown on stdout (recorded in docs/decode-runtime.md).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import replace

import numpy as np

from waferscale.model.errors import ModelError

log = logging.getLogger(__name__)

#: (chat?, prompt) of the golden decodes.
GOLDEN_PROMPTS: list[tuple[bool, str]] = [
    (False, "The capital of France is"),
    (False, "Once upon a time, in a small village by the sea,"),
    (True, "Write a Python function that reverses a string."),
    (True, "What is the capital of France?"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--W", type=int, default=48)
    parser.add_argument("--H", type=int, default=12)
    parser.add_argument("--H-head", type=int, default=64)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.max_tokens <= 0:
        parser.error("--max-tokens must be positive")

    from waferscale.decode.numerics import WaferNumerics
    from waferscale.model.gguf_loader import ModelWeights, load_model
    from waferscale.model.reference import ReferenceModel, greedy_tokens
    from waferscale.model.threads import blas_limit
    from waferscale.plan.geometry import LayerGrid
    from waferscale.plan.pack import wafer_weights

    try:
        loaded = load_model(args.model, progress=False)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    cfg, tok = loaded.config, loaded.tokenizer
    prompts = [tok.encode_chat([{"role": "user", "content": p}]) if chat else tok.encode(p)
               for chat, p in GOLDEN_PROMPTS]
    longest = max(len(p) for p in prompts) + args.max_tokens
    grid = LayerGrid(cfg, args.W, args.H, args.H_head, slots=math.ceil(longest / args.W))
    ww = wafer_weights(loaded.weights)
    wafer = WaferNumerics(cfg, ww, grid)
    ref = ReferenceModel.from_loaded(loaded)

    def widen(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.T.astype(np.float32))  # (out, in) f16 -> (in, out) f32

    f16w = ModelWeights(
        token_embd=ww.token_embd.astype(np.float32),
        output_norm=ww.output_norm,
        output=ww.output.astype(np.float32),
        layers=[replace(loaded.weights.layers[i], **{
            n: widen(getattr(layer, n)) for n in ("wq", "wk", "wv", "wo", "w_gate", "w_up",
                                                  "w_down")}) for i, layer in enumerate(ww.layers)])
    ref16 = ReferenceModel(cfg, f16w)

    print(f"# Wafer numerics vs the float32 reference: {loaded.name}\n")
    print(f"Grid W={grid.W}, H={grid.H}, H_head={grid.H_head}, slots={grid.slots}; "
          f"up to {args.max_tokens} new tokens per prompt.\n")
    print("| prompt | tokens (prompt + new) | top-1 agree | max abs diff vs fp32 | "
          "vs fp32/f16w | fp32/f16w vs fp32 | logit range | greedy identical |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    total_agree = total_n = 0
    worst = worst16 = 0.0
    all_same = True
    for (chat, text), ids in zip(GOLDEN_PROMPTS, prompts):
        t0 = time.perf_counter()
        with blas_limit():
            cont = greedy_tokens(ref, ids, args.max_tokens, tok.stop_ids)
            seq = ids + cont
            lr = ref.forward(seq, ref.new_cache(len(seq)), all_logits=True)
            l16 = ref16.forward(seq, ref16.new_cache(len(seq)), all_logits=True)
        lw = wafer.forward(seq, wafer.new_cache())
        mine = wafer.generate(ids, args.max_tokens, stop_ids=tok.stop_ids)
        agree = int(np.sum(lr.argmax(-1) == lw.argmax(-1)))
        d32 = float(np.abs(lw - lr).max())
        d16 = float(np.abs(lw - l16).max())
        dw = float(np.abs(l16 - lr).max())
        rng = float(lr.max() - lr.min())
        same = mine == cont
        part = next((i for i, (a, b) in enumerate(zip(mine, cont)) if a != b),
                    min(len(mine), len(cont)))
        total_agree += agree
        total_n += len(seq)
        worst, worst16 = max(worst, d32), max(worst16, d16)
        all_same &= same
        label = ("chat: " if chat else "raw: ") + text[:32]
        print(f"| {label} | {len(ids)} + {len(cont)} | {agree}/{len(seq)} | {d32:.4f} | "
              f"{d16:.4f} | {dw:.4f} | {rng:.1f} | "
              f"{'yes' if same else f'no (from new token {part})'} |")
        log.info("%s done in %.1f s", label, time.perf_counter() - t0)
    print(f"\nOverall: top-1 agreement {total_agree}/{total_n} "
          f"({100.0 * total_agree / total_n:.1f} %), max |logit diff| {worst:.4f} vs fp32 and "
          f"{worst16:.4f} vs fp32 on f16 weights; greedy continuations "
          f"{'all identical' if all_same else 'NOT all identical'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
