"""The published method's caption coder, reproduced as a baseline: LM token ranks + zlib.

"LMM-driven Semantic Image-Text Coding for Ultra Low-bitrate Image Compression" (Murai, Sun,
Katto) codes its captions with an LLMZip-style scheme; its notebook
(`llavanextCaption_Compression.ipynb` in the authors' public repository, class `LlamaZip`) does:

1. tokenise the caption with the tokenizer's default special tokens (Llama: a leading BOS);
2. cut the tokens into windows of CONTEXT_SIZE = 8; each window is scored on its own, from a
   single start token — the context restarts at every window boundary;
3. for each token, its rank among the LM's next-token logits sorted in descending order;
4. ranks as an `array("H")` (16-bit, little-endian here), then `zlib.compress(level=9)`.
   The token count is implied by the stream's length.

We keep all of that, with three readings where the notebook is tied to its 32k-vocabulary Llama:

* the window start token: the notebook uses EOS, a neutral boundary for its Llama-family model.
  Gemma is crippled by a bare EOS (on 8 Kodak captions: 5.5 % of tokens at rank 0 vs 22.8 % after
  BOS; 4.00 vs 3.30 bits/char), so each window starts from the model's own start token (BOS, else
  EOS) — for SmolLM2 the two differ by 0.5 %. The baseline is measured at its best, not crippled.
* rank width: 16 bits while the vocabulary fits, else the fewest whole bytes that hold any rank
  (3 for Gemma's 262k vocabulary; 16 bits would overflow).
* ties in the logits are broken by token id (a stable sort), so encoder and decoder agree.

The encoder refuses text the tokenizer cannot reproduce exactly (the notebook did not check), so
decoding is exact. Everything runs on `LanguageModel.session`, the token-by-token schedule the
decoder runs.
"""

from __future__ import annotations

import zlib

import torch

from stic import codecs
from stic.errors import FormatError, InputError
from stic.text.baselines import text_to_utf8
from stic.text.lm import LanguageModel

#: tokens per window; the context restarts at each window (the published CONTEXT_SIZE)
WINDOW = 8
#: the decoder refuses streams of more tokens than this (a caption has ~80)
MAX_TOKENS = 1 << 17


class RankZlibCoder:
    """TextCoder for the published scheme on any `LanguageModel`."""

    codec_id = codecs.TEXT_RANK_ZLIB

    def __init__(self, lm: LanguageModel, window: int = WINDOW):
        self.lm = lm
        self.window = window
        self.name = f"rank-zlib:{lm.name}"
        self._window_start = lm.start_ids()
        # what the tokenizer adds by default (a BOS for Llama/Gemma, nothing for GPT-2 style)
        self._added_prefix = [int(t) for t in lm.tokenizer("", add_special_tokens=True)["input_ids"]]
        self._rank_bytes = max(2, -(-(lm.vocab_size - 1).bit_length() // 8))

    def fingerprint(self) -> bytes:
        return self.lm.fingerprint()

    # -- tokens ---------------------------------------------------------------------------------
    def _text_ids(self, text: str) -> list[int]:
        text_to_utf8(text)  # InputError for what UTF-8 cannot hold
        ids = self.lm.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids = [int(t) for t in ids]
        if self._ids_text(ids) != text:
            raise InputError(f"{self.name}: the model's tokenizer cannot reproduce this text exactly")
        return ids

    def _ids_text(self, ids: list[int]) -> str:
        return self.lm.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    # -- ranks ----------------------------------------------------------------------------------
    def token_ranks(self, ids: list[int]) -> list[int]:
        """Rank of each token in its window's next-token logits (0 = the most likely)."""
        ranks = []
        for begin in range(0, len(ids), self.window):
            session = self.lm.session(self._window_start)
            for token in ids[begin : begin + self.window]:
                logits = session.logits()
                value = logits[token]
                ranks.append(int((logits > value).sum()) + int((logits[:token] == value).sum()))
                session.push(token)
        return ranks

    def ranked_tokens(self, ranks: list[int]) -> list[int]:
        """Inverse of token_ranks: replay the windows, taking the token at each rank."""
        ids = []
        for begin in range(0, len(ranks), self.window):
            session = self.lm.session(self._window_start)
            for rank in ranks[begin : begin + self.window]:
                token = _token_at_rank(session.logits(), rank)
                ids.append(token)
                session.push(token)
        return ids

    # -- TextCoder ------------------------------------------------------------------------------
    def encode(self, text: str) -> bytes:
        ranks = self.token_ranks(self._added_prefix + self._text_ids(text))
        return zlib.compress(b"".join(r.to_bytes(self._rank_bytes, "little") for r in ranks), 9)

    def decode(self, data: bytes) -> str:
        inflater = zlib.decompressobj()
        width = self._rank_bytes
        limit = MAX_TOKENS * width
        try:
            raw = inflater.decompress(bytes(data), limit + 1)
        except zlib.error as err:
            raise FormatError(f"{self.name}: corrupt stream ({err})") from err
        if len(raw) > limit:
            raise FormatError(f"{self.name}: stream holds more than {MAX_TOKENS} tokens; refused")
        if not inflater.eof or inflater.unused_data:
            raise FormatError(f"{self.name}: truncated or padded stream")
        if len(raw) % width:
            raise FormatError(f"{self.name}: corrupt stream (not a whole number of ranks)")
        ranks = [int.from_bytes(raw[i : i + width], "little") for i in range(0, len(raw), width)]
        if any(r >= self.lm.vocab_size for r in ranks):
            raise FormatError(f"{self.name}: corrupt stream (a rank beyond the vocabulary)")
        ids = self.ranked_tokens(ranks)
        if any(t >= len(self.lm.tokenizer) for t in ids):
            raise FormatError(f"{self.name}: corrupt stream (a token the tokenizer does not have)")
        prefix = len(self._added_prefix)
        if ids[:prefix] != self._added_prefix:
            raise FormatError(f"{self.name}: corrupt stream (does not start with the tokenizer's prefix)")
        return self._ids_text(ids[prefix:])

    def __repr__(self) -> str:
        return f"<RankZlibCoder {self.name} window={self.window}>"


def _token_at_rank(logits: torch.Tensor, rank: int) -> int:
    """The token at position `rank` of the logits sorted descending, ties by ascending id — the
    order token_ranks counts in — without sorting the whole vocabulary (ranks are mostly small)."""
    value = torch.topk(logits, rank + 1).values[rank]
    above = int((logits > value).sum())
    tied = torch.nonzero(logits == value).flatten()  # ascending ids
    return int(tied[rank - above])
