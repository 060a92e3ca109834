"""The GGUF file's byte-level BPE tokenizer, built on the ``tokenizers`` library.

A GGUF file with ``tokenizer.ggml.model == "gpt2"`` carries a GPT-2 style byte-level BPE:
``tokenizer.ggml.tokens`` (the vocabulary, id = index, bytes spelled with GPT-2's
byte-to-unicode alphabet), ``tokenizer.ggml.merges`` (``"left right"`` strings, in priority
order), ``tokenizer.ggml.token_type`` (1 normal, 3 control, 4 user-defined, ...) and
``tokenizer.ggml.pre`` (the pre-tokenizer, i.e. how text is split before BPE).
:class:`GGUFTokenizer` rebuilds that as a ``tokenizers.Tokenizer`` (BPE model, ByteLevel
pre-tokenizer and decoder, control tokens registered as special tokens).

Protocol:

* :meth:`GGUFTokenizer.encode` never turns text like ``"<|im_end|>"`` into a control token
  unless asked (``parse_special=True``): user text cannot inject chat markup.
* :meth:`GGUFTokenizer.encode_chat` renders the GGUF's ``tokenizer.chat_template`` with jinja2
  (in a sandbox, as ``transformers`` does; a ChatML template when the file has none), then
  tokenizes the markup the template wrote with control tokens recognised and each message's
  content with them not recognised, so message text cannot inject chat markup.
* :class:`StreamDecoder` turns ids into text incrementally with ``tokenizers``' own
  ``DecodeStream``, holding back the bytes of a UTF-8 character that is split across tokens,
  so streamed output is never garbled.

Limits: only the ``gpt2`` tokenizer model and the pre-tokenizers in :data:`PRE_TOKENIZERS`
(others raise :class:`~waferscale.model.errors.ModelError`); chat needs the ChatML control
tokens (``<|im_start|>``/``<|im_end|>``), which also end the assistant's turn.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from waferscale.model.errors import ModelError

log = logging.getLogger(__name__)

#: GGUF token types (``tokenizer.ggml.token_type``), as llama.cpp defines them.
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = (
    1, 2, 3, 4, 5, 6)

#: ``tokenizer.ggml.pre`` values understood, mapped to how text is split before BPE:
#: ``"gpt2"`` = GPT-2's regex; ``"digits+gpt2"`` = every digit on its own, then GPT-2's regex
#: (llama.cpp's StarCoder/SmolLM pre-tokenizer).
PRE_TOKENIZERS: dict[str, str] = {
    "default": "gpt2",
    "gpt2": "gpt2",
    "smollm": "digits+gpt2",
    "starcoder": "digits+gpt2",
    "refact": "digits+gpt2",
}

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"

#: Rendered when the GGUF file has no ``tokenizer.chat_template``.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves;
    the other 68 bytes, in increasing order, take the characters U+0100, U+0101, ...
    (so the space byte 0x20 is ``Ġ`` U+0120 and newline 0x0A is ``Ċ`` U+010A).
    """
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    mapping: dict[int, str] = {}
    shifted = 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(0x100 + shifted)
            shifted += 1
    return mapping


class GGUFTokenizer:
    """Byte-level BPE tokenizer of a GGUF model (see the module docstring for the protocol).

    Attributes:
        tokens: the vocabulary strings, index = token id.
        token_types: GGUF token type per id.
        bos_id / eos_id: ids from the metadata (``None`` when absent).
        add_bos: whether :meth:`encode` prepends ``bos_id`` by default.
        chat_template: the raw ``tokenizer.chat_template`` string, if any.
        stop_ids: ids that end generation (EOS, EOT, ``<|im_end|>``, ``<|endoftext|>``).
        unrepresentable_bytes: byte values no token spells on its own; :meth:`encode` drops
            them (logging a warning), exactly like llama.cpp, so such text does not round-trip.
    """

    def __init__(self, tokens: Sequence[str], merges: Sequence[str], token_types: Sequence[int],
                 *, pre: str = "default", bos_id: int | None = None, eos_id: int | None = None,
                 eot_id: int | None = None, add_bos: bool = False,
                 chat_template: str | None = None) -> None:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        if not tokens:
            raise ModelError("the GGUF tokenizer vocabulary is empty")
        if len(token_types) != len(tokens):
            raise ModelError(f"tokenizer.ggml.token_type has {len(token_types)} entries for "
                             f"{len(tokens)} tokens")
        if pre not in PRE_TOKENIZERS:
            raise ModelError(f"unsupported pre-tokenizer {pre!r} (tokenizer.ggml.pre); "
                             f"supported: {', '.join(sorted(PRE_TOKENIZERS))}")
        for name, value in (("bos", bos_id), ("eos", eos_id), ("eot", eot_id)):
            if value is not None and not 0 <= value < len(tokens):
                raise ModelError(f"{name} token id {value} is outside the vocabulary")
        self.tokens = list(tokens)
        self.token_types = [int(t) for t in token_types]
        self.pre = pre
        self.bos_id, self.eos_id = bos_id, eos_id
        self.add_bos = add_bos
        self.chat_template = chat_template

        vocab: dict[str, int] = {}
        for i, tok in enumerate(self.tokens):
            if tok in vocab:
                log.warning("duplicate vocabulary entry %r (ids %d and %d); encoding uses %d",
                            tok, vocab[tok], i, vocab[tok])
                continue
            vocab[tok] = i
        self._vocab = vocab
        pairs: list[tuple[str, str]] = []
        for merge in merges:
            left, sep, right = merge.partition(" ")
            if not sep or not left or not right:
                raise ModelError(f"malformed BPE merge {merge!r} in tokenizer.ggml.merges")
            pairs.append((left, right))
        try:
            bpe = models.BPE(vocab=vocab, merges=pairs, fuse_unk=False)
        except Exception as err:  # tokenizers reports a merge naming an unknown token this way
            raise ModelError(f"inconsistent BPE vocabulary/merges: {err}") from err
        tk = Tokenizer(bpe)
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if PRE_TOKENIZERS[pre] == "digits+gpt2":
            tk.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), byte_level])
        else:
            tk.pre_tokenizer = byte_level
        tk.decoder = decoders.ByteLevel()
        typed = list(zip(self.tokens, self.token_types, strict=True))
        specials = [AddedToken(t, special=True, normalized=False)
                    for t, ty in typed if ty == TOKEN_CONTROL]
        user = [AddedToken(t, special=False, normalized=False)
                for t, ty in typed if ty == TOKEN_USER_DEFINED]
        tk.add_special_tokens(specials)
        if user:
            tk.add_tokens(user)
        self._tk = tk

        b2u = byte_to_unicode()
        u2b = {ch: byte for byte, ch in b2u.items()}
        self._bytes: list[bytes] = []
        for tok, ty in typed:
            if ty in (TOKEN_CONTROL, TOKEN_USER_DEFINED) or any(ch not in u2b for ch in tok):
                self._bytes.append(tok.encode("utf-8"))
            else:
                self._bytes.append(bytes(u2b[ch] for ch in tok))

        stops = {i for i in (eos_id, eot_id) if i is not None}
        for name in (IM_END, END_OF_TEXT):
            marker = self.special_id(name)
            if marker is not None:
                stops.add(marker)
        self.stop_ids: frozenset[int] = frozenset(stops)
        # Byte values with no single-byte token (SmolLM2 lacks e.g. 0x04, 0xF1, 0xF5..0xFF):
        # BPE cannot spell them, so they vanish from encoded text, as they do in llama.cpp.
        single = {self._bytes[i][0] for i, ty in enumerate(self.token_types)
                  if ty not in (TOKEN_CONTROL, TOKEN_USER_DEFINED) and len(self._bytes[i]) == 1}
        self.unrepresentable_bytes: frozenset[int] = frozenset(set(range(256)) - single)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> GGUFTokenizer:
        """Build the tokenizer from decoded GGUF metadata (``tokenizer.*`` keys).

        Raises:
            ModelError: not a ``gpt2`` (byte-level BPE) tokenizer, missing arrays, or an
                unsupported pre-tokenizer.
        """
        model = meta.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise ModelError(f"unsupported tokenizer model {model!r} (tokenizer.ggml.model); "
                             "only 'gpt2' byte-level BPE is implemented")
        tokens = meta.get("tokenizer.ggml.tokens")
        merges = meta.get("tokenizer.ggml.merges")
        if not isinstance(tokens, list) or not isinstance(merges, list):
            raise ModelError("GGUF metadata lacks tokenizer.ggml.tokens or tokenizer.ggml.merges")
        types = meta.get("tokenizer.ggml.token_type", [TOKEN_NORMAL] * len(tokens))
        pre = meta.get("tokenizer.ggml.pre", "default")

        def opt_id(key: str) -> int | None:
            value = meta.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(tokens, merges, types, pre=pre,
                   bos_id=opt_id("tokenizer.ggml.bos_token_id"),
                   eos_id=opt_id("tokenizer.ggml.eos_token_id"),
                   eot_id=opt_id("tokenizer.ggml.eot_token_id"),
                   add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
                   chat_template=meta.get("tokenizer.chat_template"))

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return len(self.tokens)

    def special_id(self, text: str) -> int | None:
        """Id of the control token spelled ``text``, or ``None``."""
        i = self._vocab.get(text)
        if i is None or self.token_types[i] != TOKEN_CONTROL:
            return None
        return i

    def is_control(self, token_id: int) -> bool:
        """True for control tokens (chat markup, EOS, ...), which plain text never contains."""
        return self.token_types[token_id] == TOKEN_CONTROL

    def encode(self, text: str, *, parse_special: bool = False,
               add_bos: bool | None = None) -> list[int]:
        """Token ids of ``text``.

        Args:
            text: any string.
            parse_special: recognise control-token spellings (``<|im_start|>``...) in ``text``;
                when False they are tokenized as ordinary characters.
            add_bos: prepend ``bos_id``; ``None`` follows ``tokenizer.ggml.add_bos_token``.

        Raises:
            ModelError: ``text`` holds unpaired surrogates (it is not encodable as UTF-8).
        """
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as err:  # lone surrogates, e.g. undecodable argv bytes
            raise ModelError(f"the text is not valid Unicode ({err.reason} at index "
                             f"{err.start}); was it read with the wrong encoding?") from None
        if self.unrepresentable_bytes and not self.unrepresentable_bytes.isdisjoint(raw):
            log.warning("the text contains bytes this vocabulary cannot represent; they are "
                        "dropped (as llama.cpp does)")
        self._tk.encode_special_tokens = not parse_special
        ids = list(self._tk.encode(text, add_special_tokens=False).ids)
        if (self.add_bos if add_bos is None else add_bos):
            if self.bos_id is None:
                raise ModelError("this model defines no BOS token")
            ids.insert(0, self.bos_id)
        return ids

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        """Text of ``ids`` (invalid UTF-8 becomes U+FFFD); ``skip_special`` drops control tokens."""
        self._check_ids(ids)
        return str(self._tk.decode([int(i) for i in ids], skip_special_tokens=skip_special))

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes token ``token_id`` stands for (control tokens: their UTF-8 spelling)."""
        self._check_ids([token_id])
        return self._bytes[token_id]

    def _check_ids(self, ids: Sequence[int]) -> None:
        n = len(self.tokens)
        for i in ids:
            if not 0 <= int(i) < n:
                raise ModelError(f"token id {i} is outside the vocabulary (0..{n - 1})")

    def _require_chatml(self) -> tuple[int, int]:
        start, end = self.special_id(IM_START), self.special_id(IM_END)
        if start is None or end is None or (self.chat_template is not None
                                            and IM_START not in self.chat_template):
            raise ModelError("this model has no ChatML chat template (<|im_start|>/<|im_end|>); "
                             "use a plain prompt instead of --chat")
        return start, end

    def render_chat(self, messages: Sequence[Mapping[str, str]], *,
                    add_generation_prompt: bool = True) -> str:
        """The chat template rendered with jinja2 (sandboxed, ``trim_blocks`` and
        ``lstrip_blocks`` as in ``transformers``), markup spelled out as text.

        Raises:
            ModelError: the model has no ChatML markup, a message is malformed, or the template
                does not render (its own ``raise_exception`` included).
        """
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self._require_chatml()
        msgs = [dict(m) for m in messages]
        for msg in msgs:
            role, content = msg.get("role"), msg.get("content")
            if not isinstance(role, str) or not role or not isinstance(content, str):
                raise ModelError(f"chat message needs string 'role' and 'content': {msg!r}")

        def raise_exception(message: str) -> None:
            raise ModelError(f"the chat template refused the conversation: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        special = {"bos_token": self.bos_id, "eos_token": self.eos_id}
        names = {k: self.tokens[v] if v is not None else "" for k, v in special.items()}
        try:
            template = env.from_string(self.chat_template or CHATML_TEMPLATE)
            return template.render(messages=msgs, add_generation_prompt=add_generation_prompt,
                                   **names)
        except jinja2.TemplateError as err:
            raise ModelError(f"the GGUF chat template does not render: {err}") from err

    def encode_chat(self, messages: Sequence[Mapping[str, str]], *,
                    add_generation_prompt: bool = True) -> list[int]:
        """Token ids of a conversation rendered by :meth:`render_chat`, ready for the
        assistant's reply (with ``add_generation_prompt``).

        ``messages`` is a list of ``{"role": ..., "content": ...}``. The template's own text
        (markup, a default system message it inserts) is tokenized with control tokens
        recognised; each message's content is found in the rendered text, in order, and
        tokenized with ``parse_special=False``.

        Raises:
            ModelError: as :meth:`render_chat`, or the template changes message content so
                that it cannot be found in the rendered text.
        """
        text = self.render_chat(messages, add_generation_prompt=add_generation_prompt)
        ids: list[int] = []
        pos = 0
        for msg in messages:
            content = msg["content"]
            at = text.find(content, pos) if content else pos
            if at < 0:
                content = content.strip()
                at = text.find(content, pos)
            if at < 0:
                raise ModelError("the chat template rewrites message content beyond "
                                 "stripping; cannot tokenize it safely")
            ids.extend(self.encode(text[pos:at], parse_special=True, add_bos=False))
            ids.extend(self.encode(content, add_bos=False))
            pos = at + len(content)
        ids.extend(self.encode(text[pos:], parse_special=True, add_bos=False))
        return ids

    def chat_text(self, messages: Sequence[Mapping[str, str]], *,
                  add_generation_prompt: bool = True) -> str:
        """The text :meth:`encode_chat` tokenizes, with the markup spelled out (for display)."""
        return self.render_chat(messages, add_generation_prompt=add_generation_prompt)

    def stream_decoder(self, *, skip_special: bool = True) -> StreamDecoder:
        """A fresh :class:`StreamDecoder` over this vocabulary."""
        return StreamDecoder(self, skip_special=skip_special)


class StreamDecoder:
    """Incremental detokenizer: feed ids one by one, get text as soon as it is complete.

    A thin wrapper of ``tokenizers.decoders.DecodeStream``, which holds back the bytes of a
    multi-byte UTF-8 character split across tokens until the character is complete. The ids it
    is still holding are kept here too, so that :meth:`flush` can release them at the end of
    the stream (an incomplete tail becomes U+FFFD, as in ``tokenizer.decode``). The
    concatenated output equals ``tokenizer.decode(ids, skip_special=...)``.
    """

    def __init__(self, tokenizer: GGUFTokenizer, *, skip_special: bool = True) -> None:
        from tokenizers.decoders import DecodeStream

        self._tok = tokenizer
        self._skip = skip_special
        self._stream = DecodeStream(skip_special_tokens=skip_special)
        self._held: list[int] = []

    def push(self, token_id: int) -> str:
        """Text completed by ``token_id`` (possibly empty)."""
        token_id = int(token_id)
        self._tok._check_ids([token_id])
        text = self._stream.step(self._tok._tk, token_id)
        if text is None:
            self._held.append(token_id)
            return ""
        self._held.clear()
        return str(text)

    def flush(self) -> str:
        """Whatever is still held back (end of stream)."""
        held, self._held = self._held, []
        return self._tok.decode(held, skip_special=self._skip) if held else ""
