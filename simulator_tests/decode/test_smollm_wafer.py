"""SmolLM2-135M-Instruct decoded on the simulated wafer (slow: opt in with ``-m slow``).

The whole model on one plan of the decode program (the default PE budget of
``generate --backend sim``): on each golden prompt of simulator_tests/model/test_golden.py,
32 greedy tokens (stop tokens ignored) must equal the wafer-numerics reference's, and the
chat prompt's answer must be the golden one, "The capital of France is Paris.". The
prompt's KV comes from the reference (``prefill="host"``, bit-identical to prefill on the
wafer, which test_decode_engine.py checks) to keep the run within minutes per prompt.
"""

from __future__ import annotations

import pytest

from waferscale.model.errors import ModelError

pytestmark = pytest.mark.slow

GOLDEN_PROMPTS = [
    (False, "The capital of France is"),
    (False, "Once upon a time, in a small village by the sea,"),
    (True, "Write a Python function that reverses a string."),
    (True, "What is the capital of France?"),
]


@pytest.fixture(scope="module")
def setup():
    from waferscale.decode.engine import Engine
    from waferscale.decode.numerics import WaferNumerics
    from waferscale.model.gguf_loader import load_model
    from waferscale.plan.pack import wafer_weights

    try:
        loaded = load_model(progress=False)
    except ModelError as err:
        pytest.skip(f"default model missing ({err})")
    engine = Engine.load(context=128, progress=False)
    ww = wafer_weights(loaded.weights)
    engine.wafer_weights = ww
    return loaded.tokenizer, engine, WaferNumerics(loaded.config, ww, engine.grid)


@pytest.mark.parametrize(("chat", "prompt"), GOLDEN_PROMPTS, ids=[p[:24] for _, p in GOLDEN_PROMPTS])
def test_32_tokens_equal_the_wafer_numerics_reference(setup, chat, prompt):
    tok, engine, ref = setup
    ids = tok.encode_chat([{"role": "user", "content": prompt}]) if chat else tok.encode(prompt)
    expect = ref.generate(ids, 32)
    got = list(engine.generate(ids, 32, prefill="host"))
    assert got == expect
    if prompt == "What is the capital of France?":
        assert tok.decode(got[:8]) == "The capital of France is Paris.<|im_end|>"
