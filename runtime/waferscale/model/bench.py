"""Benchmark of the NumPy reference decoder: load time, prefill time, decode tokens/s.

Run by hand (not a timed test)::

    python -m waferscale.model.bench [--model PATH] [--prompt-tokens 64] [--decode-tokens 128]
                                     [--repeat 3]

The prompt is a fixed English text cut to ``--prompt-tokens`` tokens. Each repeat prefills it
into a fresh KV cache and then runs ``--decode-tokens`` greedy decode steps without stopping at
end-of-text (so every repeat does the same work). Reported: the load time (GGUF parse +
dequantize + tokenizer), and the median prefill time and decode throughput over the repeats.
BLAS threading is whatever NumPy's BLAS picks on this machine (the environment is not changed).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time

import numpy as np

from waferscale.model.errors import ModelError

log = logging.getLogger(__name__)

_TEXT = ("The history of computing is a story of ever larger machines built from ever smaller "
         "parts. Early computers filled rooms and used vacuum tubes; transistors, integrated "
         "circuits and microprocessors followed, each step packing more logic into less space. "
         "Today a single wafer of silicon can hold hundreds of thousands of cores connected by "
         "a mesh network, and the question is how to feed them data fast enough. ") * 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the NumPy reference decoder.")
    parser.add_argument("--model", help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if min(args.prompt_tokens, args.decode_tokens, args.repeat) <= 0:
        parser.error("--prompt-tokens, --decode-tokens and --repeat must be positive")

    from waferscale.model.gguf_loader import load_model
    from waferscale.model.reference import GenerationStats, ReferenceModel

    try:
        t0 = time.perf_counter()
        loaded = load_model(args.model)
        load_s = time.perf_counter() - t0
        model = ReferenceModel.from_loaded(loaded)
        prompt = loaded.tokenizer.encode(_TEXT)[: args.prompt_tokens]
        if len(prompt) < args.prompt_tokens:
            raise ModelError(f"the benchmark text has only {len(prompt)} tokens")
        cache = model.new_cache(len(prompt) + args.decode_tokens)
        prefill, rates = [], []
        for _ in range(args.repeat):
            cache.reset()
            stats = GenerationStats()
            for _token in model.generate(prompt, args.decode_tokens, stats=stats, cache=cache):
                pass
            prefill.append(stats.prefill_seconds)
            rates.append(stats.decode_tokens_per_second)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    cfg = loaded.config
    print(f"model: {loaded.path.name} ({cfg.parameter_count() / 1e6:.1f} M parameters, "
          f"{loaded.weights.nbytes() / 1e6:.0f} MB float32)")
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"numpy {np.__version__}")
    print(f"load: {load_s:.2f} s")
    print(f"prefill: {len(prompt)} tokens in {statistics.median(prefill) * 1e3:.0f} ms "
          f"(median of {args.repeat})")
    print(f"decode: {statistics.median(rates):.1f} tokens/s (median of {args.repeat}; "
          f"min {min(rates):.1f}, max {max(rates):.1f}; {args.decode_tokens} tokens after a "
          f"{len(prompt)}-token prompt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
