#!/usr/bin/env cs_python
"""Host driver of csl/llama_decode: a small random Llama decoded on the device, checked token
for token and bit for bit (KV cache) against waferscale's wafer-numerics reference.

Compile first (see commands_wse3.sh / commands_wse2.sh), then run ``cs_python run.py --name
out`` (add ``--cmaddr IP:PORT`` for a CS system; without it the simulator runs). The model's
shape and the grid are the compile's params (out.json); the weights are random (seed 0). The
script loads the packed tiles with memcpy, processes a 4-token prompt on the device and
generates 8 tokens, one launch ``step(pos)`` per token, with the streamed layers' weights
streamed in during each step (waferscale.decode.engine drives the SDK calls), then reads the KV cache back and compares it with the reference's: both must be
identical, since the reference performs the program's f32/f16 operations in the program's
order (docs/decode-runtime.md). Needs waferscale importable (it is under ``waferscale
cs_python``; for Cerebras' cs_python, ``pip install waferscale`` into its Python).
"""

from __future__ import annotations

import numpy as np
from cerebras.sdk.runtime.sdkruntimepybind import SdkRuntime  # pylint: disable=no-name-in-module
from waferscale.decode.engine import Engine
from waferscale.decode.numerics import WaferNumerics
from waferscale.host.kernel_run import compile_params, host_args
from waferscale.model.config import ModelConfig
from waferscale.model.gguf_loader import random_weights
from waferscale.plan.geometry import LayerGrid
from waferscale.plan.pack import pack, wafer_weights


def main() -> None:
    args = host_args()
    p = {k: int(v) for k, v in compile_params(args.name).items()}
    cfg = ModelConfig(architecture="llama", n_layers=p["L"], hidden_size=p["D"],
                      n_heads=p["G"] * p["H_kv"], n_kv_heads=p["H_kv"], head_dim=p["d"],
                      ffn_size=p["F"], rope_base=10000.0,
                      rms_eps=float(np.uint32(p["eps_bits"]).view(np.float32)),
                      vocab_size=p["V"], context_length=p["S"] * p["W"], tied_embeddings=True)
    grid = LayerGrid(cfg, W=p["W"], H=p["H"], H_head=p["H_head"], slots=p["S"],
                     n_resident=p["R"] if p["NS"] else None, stream_slots=p["NS"])
    ww = wafer_weights(random_weights(cfg, 0))

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)
    runner.load()
    runner.run()
    engine = Engine.attach(runner, pack(ww, grid), wafer_weights=ww, progress=False)
    prompt = [1, 7 % cfg.vocab_size, 3 % cfg.vocab_size, 2]
    got = list(engine.generate(prompt, 8))
    snap = engine.kv.save()
    runner.stop()

    ref = WaferNumerics(cfg, ww, grid)
    expect = ref.generate(prompt, 8, batch_prompt=False)
    cache = ref.new_cache()
    for pos, t in enumerate([*prompt, *expect][:snap.length]):
        ref.step(t, pos, cache)
    print(f"device: {got}\nreference: {expect}")
    assert got == expect, "tokens differ from the wafer-numerics reference"
    n = snap.length
    for name, a, b in (("K", snap.k, cache.k[:, :, :n]), ("V", snap.v, cache.v[:, :, :n])):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f"{name} cache differs"
    print(f"KV cache: {n} positions x {cfg.n_layers} layers identical to the reference")
    print("SUCCESS!")


if __name__ == "__main__":
    main()
