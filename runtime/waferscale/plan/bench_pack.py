"""Benchmark of host-side packing: dequantise + round, pack, and cold vs cached loads.

Run by hand (not a timed test)::

    python -m waferscale.plan.bench_pack [--model PATH] [--W 48 --H 12 --H-head 64]
                                         [--repeat 5]

Reported (seconds, and GB/s of packed output for the packing itself):

* ``dequantize``: the GGUF loader's ``load_weights`` (``gguf.quants.dequantize`` to float32);
* ``round``: :func:`~waferscale.plan.pack.wafer_weights` (every matrix to f16, once);
* ``pack``: :func:`~waferscale.plan.pack.pack`, the first call in the process, and the median
  and best of ``--repeat`` further calls (the first pays for the operating system handing the
  process fresh pages, which on a virtual machine can cost as much as the copying; the best
  is the least disturbed by other processes), and the CPU time of a one-thread pack (best of
  ``--repeat``; what one idle core achieves, unaffected by other processes' use of the
  cores). GB/s counts the bytes ``pack`` writes (the embedding rows in the result are the
  rounded embedding itself, not a copy);
* ``cold load``: :func:`~waferscale.plan.pack.load_packed` with an empty cache (hash the file,
  dequantise, round, pack, write the entry);
* ``warm load``: the same call again (mmap + CRC-32 of every file), and without the CRC check.

The cache used is a temporary directory (``$WAFERSCALE_PACK_CACHE`` is set for the run), so the
user's cache is neither used nor filled.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from waferscale.model.errors import ModelError

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark host-side packing.")
    parser.add_argument("--model", help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--W", type=int, default=48)
    parser.add_argument("--H", type=int, default=12)
    parser.add_argument("--H-head", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if args.repeat <= 0:
        parser.error("--repeat must be positive")

    from waferscale.model.config import config_from_metadata
    from waferscale.model.gguf_loader import (load_weights, open_gguf, read_metadata,
                                              resolve_model_path)
    from waferscale.plan import pack as P
    from waferscale.plan.geometry import LayerGrid

    try:
        path = resolve_model_path(args.model)
        t0 = time.perf_counter()
        reader = open_gguf(path)
        config = config_from_metadata(read_metadata(reader),
                                      tensor_names={t.name for t in reader.tensors})
        t_parse = time.perf_counter() - t0
        grid = LayerGrid(config, args.W, args.H, args.H_head, slots=1)
        t0 = time.perf_counter()
        weights = load_weights(reader, config, progress=False, path=path)
        t_deq = time.perf_counter() - t0
    except (ModelError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    ww = P.wafer_weights(weights)
    t_round = time.perf_counter() - t0
    t0 = time.perf_counter()
    packed = P.pack(ww, grid)
    t_first = time.perf_counter() - t0
    nbytes = packed.nbytes()
    # Bytes pack writes: the embedding rows are the f16 embedding itself, not a copy.
    written = nbytes - (packed.embedding.nbytes
                        if np.shares_memory(packed.embedding, ww.token_embd) else 0)
    del packed
    reps = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        packed = P.pack(ww, grid)
        reps.append(time.perf_counter() - t0)
        del packed
    t_pack, t_best = statistics.median(reps), min(reps)
    cpu = []
    for _ in range(args.repeat):
        c0 = time.process_time()
        packed = P.pack(ww, grid, threads=1)
        cpu.append(time.process_time() - c0)
        del packed
    t_cpu = min(cpu)
    del weights, ww

    with tempfile.TemporaryDirectory(prefix="waferscale-bench-pack-") as tmp:
        old = os.environ.get(P.CACHE_ENV)
        os.environ[P.CACHE_ENV] = tmp
        try:
            cold = P.LoadTimes()
            t0 = time.perf_counter()
            P.load_packed(path, grid, times=cold)
            t_cold = time.perf_counter() - t0
            warm = P.LoadTimes()
            t0 = time.perf_counter()
            got = P.load_packed(path, grid, times=warm)
            t_warm = time.perf_counter() - t0
            assert got.source == "cache"
            t0 = time.perf_counter()
            P.load_packed(path, grid, verify=False)
            t_noverify = time.perf_counter() - t0
        finally:
            if old is None:
                os.environ.pop(P.CACHE_ENV, None)
            else:
                os.environ[P.CACHE_ENV] = old

    gb = written / 1e9
    print(f"model {path.name}: {config.n_layers} layers, hidden {config.hidden_size}, "
          f"vocab {config.vocab_size}; grid W={grid.W} H={grid.H} H_head={grid.H_head}")
    print(f"packed output          {nbytes / 1e6:9.1f} MB ({written / 1e6:.1f} MB written by "
          "pack; GB/s below count these)")
    print(f"parse GGUF header      {t_parse:9.3f} s")
    print(f"dequantize (loader)    {t_deq:9.3f} s")
    print(f"round to f16           {t_round:9.3f} s")
    print(f"pack, first call       {t_first:9.3f} s   {gb / t_first:6.2f} GB/s")
    print(f"pack, median of {args.repeat:<2d}    {t_pack:9.3f} s   {gb / t_pack:6.2f} GB/s")
    print(f"pack, best of {args.repeat:<2d}      {t_best:9.3f} s   {gb / t_best:6.2f} GB/s")
    print(f"pack, 1 thread, CPU    {t_cpu:9.3f} s   {gb / t_cpu:6.2f} GB/s per CPU second")
    print(f"cold load_packed       {t_cold:9.3f} s   (hash {cold.hash:.2f}, dequantize "
          f"{cold.dequantize:.2f}, round {cold.round:.2f}, pack {cold.pack:.2f}, "
          f"write {cold.write:.2f})")
    print(f"warm load_packed       {t_warm:9.3f} s   (mmap + CRC-32 {warm.read_cache:.2f})")
    print(f"warm, no CRC check     {t_noverify:9.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
