"""Exact arithmetic coding of text with a causal LM's next-token distribution.

constriction does the range coding; this module is only the probability model around it:

* the LM runs token by token through `LanguageModel.session` — on *both* sides, so the encoder sees
  exactly the logits the decoder will see (a whole-sequence pass gives different logits);
* probabilities are a float64 softmax of those logits, quantised deterministically to integer
  frequencies in which every token keeps a nonzero share, so any text can be coded;
* a token is coded in two steps, its group (vocabulary split into ~sqrt(V) groups) then its index
  in the group: each categorical then has a few hundred entries, so the "every token nonzero" floor
  costs ~nothing even for a 262k vocabulary (one flat 24-bit table would lose ~1.5% per token);
* end of text is the preamble's terminator token (EOS, or "\\n\\n" where the preamble's examples
  end that way) plus a nearly free "ends here" flag (a terminator inside the text costs 6 bits);
  the stream also codes a cheap upper bound on the token count (so corrupt data cannot make the
  decoder run long) and a mode flag: texts the tokenizer cannot reproduce exactly are coded as
  raw UTF-8 bytes instead (8 bits/byte, but always exact);
* the range coder's final words are trimmed to the shortest byte string that still decodes (implied
  zero bytes follow), so the code length stays within a few bits of the model's own likelihood; the
  decoder re-derives that canonical stream and the text's canonical tokenization, and refuses data
  that differs — which catches most corruption (the container's CRC catches the rest).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import constriction
import numpy as np

from stic.codecs import TEXT_LM_EXACT, TEXT_LM_FLOAT
from stic.errors import FormatError, InputError
from stic.text.preamble import Preamble, get_preamble
from stic.text.prefix import LearnedPrefix, has_shipped_prefix, shipped_prefix

#: The offline default, chosen by bench/caption_lm.py on bits *and* speed (docs/caption_coding.md):
#: Gemma-3-270M saves ~19 bits per Kodak caption (0.00005 bpp) but costs 1.7x the CPU time, a
#: 238 MB extra install and a non-free licence. "gemma3-270m" stays selectable.
DEFAULT_MODEL = "smollm2-135m"


def default_preamble(model_name: str) -> str:
    """The preamble stic codes with unless told otherwise (chosen by bench/caption_lm.py): the
    learned prefix where one ships for the model (fewer bits and faster), else written examples."""
    return "tuned" if has_shipped_prefix(model_name) else "examples"

#: Total of every quantised frequency table (constriction's default categorical precision).
FREQ_TOTAL = 1 << 24
#: Bumped whenever the stream layout or the quantisation changes: part of the fingerprint.
STREAM_VERSION = 1

MODE_TOKENS, MODE_BYTES = 0, 1
_MODE_FREQS = np.array([FREQ_TOTAL - (1 << 12), 1 << 12], dtype=np.float64)  # bytes mode ~2^-12

#: After each terminator token: does the text end here (or is the token part of the text)?
_ENDS, _CONTINUES = 0, 1
_END_FLAG_FREQS = np.array([FREQ_TOTAL - (1 << 18), 1 << 18], dtype=np.float64)  # continue: 2^-6

#: Bytes mode: each byte uniform, then an end symbol (~14 bits) — a rare fallback, kept simple.
_BYTES_END = 256
_BYTE_WEIGHTS = np.array([64.0] * 256 + [1.0])

#: Length classes: class c means "fewer than 2**c tokens (or bytes)". Class 8 (< 256 tokens,
#: every caption) is nearly free; the decoder never runs more than 2**c steps.
MAX_LENGTH_CLASS = 24
COMMON_LENGTH_CLASS = 8
_CLASS_FREQS = np.ones(MAX_LENGTH_CLASS + 1)  # classes below 8 are never used by the encoder
_CLASS_FREQS[COMMON_LENGTH_CLASS] = 1 << 20  # ~0.1 bits
_CLASS_FREQS[COMMON_LENGTH_CLASS + 1 :] = 1 << 12  # longer texts: ~8 bits more

#: A valid stream of n bytes carries at most ~8n bits of information (its symbols' -log2 p): the
#: decoder gives up on data that would need more than 8n + this many bits (corrupt data). Chance
#: that a valid stream trips it: about 2^-64.
INFORMATION_SLACK_BITS = 64


#: constriction signals data that is invalid for the model with AssertionError (or ValueError).
_CONSTRICTION_ERRORS = (AssertionError, ValueError, RuntimeError)


def quantise(probs: np.ndarray) -> np.ndarray:
    """Integer frequencies summing to FREQ_TOTAL, each >= 1, from (unnormalised) probabilities.

    Integer probabilities (the exact engine's, each < 2^38) are quantised in exact integer
    arithmetic; float ones by the floor of a float64 product. Either way the rounding remainder
    goes to the most probable entry.
    """
    n = probs.shape[0]
    if probs.dtype.kind == "i":
        total = int(probs.sum())
        if total <= 0:
            probs, total = np.ones(n, dtype=np.int64), n
        freqs = probs * (FREQ_TOTAL - n) // total + 1
        freqs[int(np.argmax(freqs))] += FREQ_TOTAL - int(freqs.sum())
        return freqs
    total = probs.sum()
    if not total > 0 or not math.isfinite(total):
        probs, total = np.ones(n), float(n)
    freqs = np.floor(probs * ((FREQ_TOTAL - n) / total)).astype(np.int64) + 1
    freqs[int(np.argmax(freqs))] += FREQ_TOTAL - int(freqs.sum())
    return freqs


def _categorical(freqs: np.ndarray):
    return constriction.stream.model.Categorical(freqs.astype(np.float64), perfect=False)


class _GroupedVocab:
    """Splits token ids into (group, index): both categoricals stay small."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self.group_size = 1 << max(1, math.ceil(math.log2(math.sqrt(vocab_size))))
        self.n_groups = -(-vocab_size // self.group_size)

    def tables(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group probabilities [n_groups, group_size] (padding = 0) and group sums."""
        padded = np.zeros(self.n_groups * self.group_size, dtype=probs.dtype)
        padded[: probs.shape[0]] = probs
        grid = padded.reshape(self.n_groups, self.group_size)
        return grid, grid.sum(axis=1)


@dataclass
class EncodeResult:
    data: bytes
    ideal_bits: float  # the LM's own -log2 likelihood of the coded symbols (tokens + EOS)
    n_tokens: int  # tokens coded, without EOS (bytes in bytes mode)
    mode: int


class _SymbolLog:
    """The (frequencies, symbol) pairs coded so far: lets the encoder trim its stream and the
    decoder check that the data is the canonical stream for what it decoded."""

    def __init__(self):
        self.steps: list[tuple[np.ndarray, int]] = []
        self.information = 0.0  # bits: sum of -log2 of each symbol's quantised probability

    def add(self, freqs: np.ndarray, symbol: int) -> None:
        self.steps.append((freqs, symbol))
        self.information -= math.log2(int(freqs[symbol]) / FREQ_TOTAL)

    def encode(self) -> np.ndarray:
        encoder = constriction.stream.queue.RangeEncoder()
        for freqs, symbol in self.steps:
            encoder.encode(symbol, _categorical(freqs))
        return encoder.get_compressed()

    def decodes_from(self, data: bytes) -> bool:
        decoder = constriction.stream.queue.RangeDecoder(_words(data))
        try:
            return all(decoder.decode(_categorical(f)) == s for f, s in self.steps)
        except _CONSTRICTION_ERRORS:
            return False

    def shortest_stream(self) -> bytes:
        """Shortest byte string that decodes to the logged symbols when zero bytes follow it."""
        full = _words_to_bytes(self.encode())
        value = int.from_bytes(full, "big")
        best = full.rstrip(b"\0")
        lo, hi = 0, len(best)  # invariant: a valid stream of length `hi` exists
        while lo < hi:
            length = (lo + hi) // 2
            found = None
            shift = 8 * (len(full) - length)
            prefix = value >> shift
            for candidate in (prefix, prefix + 1):
                if candidate >> (8 * length):
                    continue  # carried past the first byte
                data = candidate.to_bytes(length, "big").rstrip(b"\0") if length else b""
                if self.decodes_from(data):
                    found = data
                    break
            if found is None:
                lo = length + 1
            else:
                best, hi = found, len(found)
        return best


def _probabilities_along(session, tokens: list[int]):
    """Probabilities for each of `tokens` given those before it: one batched pass where the
    session can (the exact engine: bit-identical to token by token), else token by token."""
    if hasattr(session, "probabilities_along"):
        return session.probabilities_along(tokens)
    rows = []
    for position, token in enumerate(tokens):
        rows.append(session.probabilities())
        if position < len(tokens) - 1:
            session.push(token)
    return rows


def _words_to_bytes(words: np.ndarray) -> bytes:
    return words.astype(">u4").tobytes()


def _words(data: bytes) -> np.ndarray:
    padded = data + b"\0" * (-len(data) % 4)
    return np.frombuffer(padded, dtype=">u4").astype(np.uint32)


class LMArithmeticCoder:
    """TextCoder that range-codes text with a causal LM, optionally after a fixed preamble.

    With the exact engine (stic.text.exact_model, the default) it writes codec TEXT_LM_EXACT,
    decodable everywhere; with a float engine (stic.text.lm) TEXT_LM_FLOAT, whose fingerprint
    names the machine class that wrote it.
    """

    def __init__(
        self,
        lm,
        preamble: Preamble | str = "none",
        learned: LearnedPrefix | None = None,
    ):
        """`learned`: the prefix for a learned preamble ("tuned"); default: the one stic ships
        for the model."""
        self.lm = lm
        self.codec_id = TEXT_LM_EXACT if lm.engine == "exact" else TEXT_LM_FLOAT
        self.preamble = get_preamble(preamble) if isinstance(preamble, str) else preamble
        if self.preamble.learned and learned is None:
            learned = shipped_prefix(lm.name)
        self._learned = learned if self.preamble.learned else None
        if self._learned is not None:
            self._learned.check_model(lm)
        self.name = f"lm:{lm.name}" if lm.engine == "exact" else f"lm-float:{lm.name}"
        tok = lm.tokenizer
        try:
            self._end = self.preamble.terminator_id(tok)
        except ValueError as exc:
            raise InputError(f"model {lm.name!r}: {exc}") from exc
        self._prefix = self.preamble.prefix_ids(tok, lm.start_ids())
        self._n_tokens_known = len(tok)  # ids beyond this are padding rows of the embedding
        self._vocab = _GroupedVocab(lm.vocab_size)
        #: the model's part of the fingerprint (another machine class's, to recognise its files)
        self.lm_fingerprint = lm.fingerprint()
        self._fingerprint: bytes | None = None

    # -- public API ---------------------------------------------------------------------------

    @property
    def thread_independent(self) -> bool:
        """Exact engine only: a float engine's numbers depend on torch's thread count."""
        return self.lm.engine == "exact"

    def fingerprint(self) -> bytes:
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=4)
            h.update(self.lm_fingerprint)
            h.update(
                f"v{STREAM_VERSION}|{FREQ_TOTAL}|{self._vocab.group_size}|{self._end}|".encode()
            )
            h.update(np.asarray(self._prefix, dtype=np.int64).tobytes())
            if self._learned is not None:
                h.update(self._learned.digest())
            self._fingerprint = h.digest()
        return self._fingerprint

    def encode(self, text: str) -> bytes:
        return self.encode_measured(text).data

    def decode(self, data: bytes) -> str:
        if data.endswith(b"\0"):
            raise FormatError("LM-coded caption: stream ends with a zero byte (not canonical)")
        log = _SymbolLog()
        try:
            decoder = constriction.stream.queue.RangeDecoder(_words(data))
            text = self._decode_symbols(decoder, log, len(data))
        except _CONSTRICTION_ERRORS as exc:
            raise FormatError(f"LM-coded caption: invalid range-coded stream ({exc})") from exc
        if log.shortest_stream() != data:
            raise FormatError(
                "LM-coded caption: data is corrupt (not the stream of what it decodes to)"
            )
        return text

    def ideal_bits(self, text: str) -> float:
        """The model's own -log2 likelihood of `text` (tokens + EOS), on the coding schedule."""
        return self.encode_measured(text).ideal_bits

    def encode_measured(self, text: str) -> EncodeResult:
        """Encode and also report the model's ideal code length for the same symbols."""
        if not isinstance(text, str):
            raise InputError("caption must be a str")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"caption is not valid Unicode text: {exc}") from exc
        log = _SymbolLog()
        ids = self._token_ids(text)
        if ids is None:
            raw = text.encode("utf-8")
            log.add(quantise(_MODE_FREQS), MODE_BYTES)
            self._log_length(log, len(raw))
            byte_freqs = quantise(_BYTE_WEIGHTS)
            for byte in [*raw, _BYTES_END]:
                log.add(byte_freqs, byte)
            ideal = -math.log2(_BYTE_WEIGHTS[0] / _BYTE_WEIGHTS.sum()) * len(raw) - math.log2(
                _BYTE_WEIGHTS[_BYTES_END] / _BYTE_WEIGHTS.sum()
            )
            return EncodeResult(self._finish(log), ideal, len(raw), MODE_BYTES)
        log.add(quantise(_MODE_FREQS), MODE_TOKENS)
        self._log_length(log, len(ids))
        session = self.lm.session(self._prefix, self._learned)
        ideal = 0.0
        end_flags = quantise(_END_FLAG_FREQS)
        tokens = [*ids, self._end]
        for position, (token, probs) in enumerate(zip(tokens, _probabilities_along(session, tokens), strict=True)):
            # (the exact engine's probabilities stop at 2^-30 of the top token's: count at least that)
            ideal -= math.log2(max(probs[token], 1 if probs.dtype.kind == "i" else 0) / probs.sum())
            grid, group_sums = self._vocab.tables(probs)
            group, index = divmod(token, self._vocab.group_size)
            log.add(quantise(group_sums), group)
            log.add(quantise(grid[group]), index)
            if token == self._end:
                log.add(end_flags, _ENDS if position == len(ids) else _CONTINUES)
        return EncodeResult(self._finish(log), ideal, len(ids), MODE_TOKENS)

    # -- internals ----------------------------------------------------------------------------

    def _token_ids(self, text: str) -> list[int] | None:
        """Token ids that decode back to exactly `text`, or None (then bytes mode is used)."""
        tok = self.lm.tokenizer
        ids = tok.encode(text, add_special_tokens=False)
        decoded = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return list(ids) if decoded == text else None

    @staticmethod
    def _finish(log: _SymbolLog) -> bytes:
        data = log.shortest_stream()
        if log.information > 8 * len(data) + INFORMATION_SLACK_BITS:
            raise InputError("caption cannot be coded (a 2^-64 coincidence; change one character)")
        return data

    @staticmethod
    def _log_length(log: _SymbolLog, length: int) -> None:
        length_class = max(COMMON_LENGTH_CLASS, length.bit_length())
        if length_class > MAX_LENGTH_CLASS:
            raise InputError(f"caption too long to code ({length} tokens/bytes)")
        log.add(quantise(_CLASS_FREQS), length_class)

    def _decode_symbols(self, decoder, log: _SymbolLog, n_bytes: int) -> str:
        budget = 8 * n_bytes + INFORMATION_SLACK_BITS

        def read(freqs: np.ndarray) -> int:
            symbol = int(decoder.decode(_categorical(freqs)))
            log.add(freqs, symbol)
            if log.information > budget:
                raise FormatError("LM-coded caption: data is corrupt (decodes past its end)")
            return symbol

        mode = read(quantise(_MODE_FREQS))
        limit = 1 << read(quantise(_CLASS_FREQS))  # at most limit - 1 tokens / bytes
        if mode == MODE_BYTES:
            return self._decode_bytes(read, limit)
        session = self.lm.session(self._prefix, self._learned)
        end_flags = quantise(_END_FLAG_FREQS)
        ids: list[int] = []
        for _ in range(limit):
            probs = session.probabilities()
            grid, group_sums = self._vocab.tables(probs)
            group = read(quantise(group_sums))
            token = group * self._vocab.group_size + read(quantise(grid[group]))
            if token >= self._n_tokens_known:
                raise FormatError(
                    f"LM-coded caption: decoded token id {token} is not in the vocabulary"
                )
            if token == self._end and read(end_flags) == _ENDS:
                text = self.lm.tokenizer.decode(
                    ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
                if self._token_ids(text) != ids:  # the encoder only ever codes this tokenization
                    raise FormatError(
                        "LM-coded caption: data is corrupt (not a canonical tokenization)"
                    )
                return text
            ids.append(token)
            session.push(token)
        raise FormatError(f"LM-coded caption: no end of text within {limit - 1} tokens")

    @staticmethod
    def _decode_bytes(read, limit: int) -> str:
        byte_freqs = quantise(_BYTE_WEIGHTS)
        raw = bytearray()
        for _ in range(limit):
            byte = read(byte_freqs)
            if byte == _BYTES_END:
                try:
                    return raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise FormatError(f"LM-coded caption: bytes are not UTF-8 ({exc})") from exc
            raw.append(byte)
        raise FormatError(f"LM-coded caption: no end of text within {limit - 1} bytes")


def default_coder(model: str | None = None, preamble: str | None = None) -> LMArithmeticCoder:
    """The LM coder stic uses unless told otherwise: `model` is any name load_lm accepts."""
    from stic.text.lm import load_lm

    lm = load_lm(model or DEFAULT_MODEL)
    return LMArithmeticCoder(lm, preamble=preamble or default_preamble(lm.name))
