"""Fit captions to CLIP's 77-token text window, and count their tokens.

Stable Diffusion style refiners read the caption through CLIP's text encoder, which sees at most 77
tokens (75 after BOS/EOS); anything longer is silently cut. The published method lost 20-35 % of its
caption tokens that way, paying bits for words the refiner never saw. So captions are shortened
*before* coding: whole sentences while they fit, else whole words.

CLIP's BPE vocabulary ships inside the `open-clip-torch` wheel (installed with --no-deps; we only
read its vocabulary file, never import the package); the tokenizer itself is transformers' CLIPTokenizer.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from stic.errors import ModelNotFoundError

#: CLIP's context length, BOS and EOS included
CLIP_CONTEXT = 77
#: caption tokens that fit beside BOS and EOS
CLIP_CAPTION_TOKENS = CLIP_CONTEXT - 2

_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def _vocab_path() -> Path:
    spec = importlib.util.find_spec("open_clip")  # never imported: only its data file is read
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "CLIP's BPE vocabulary is not installed: pip install --no-deps open-clip-torch==3.3.0"
        )
    return Path(spec.submodule_search_locations[0]) / _VOCAB_FILE


@lru_cache(maxsize=1)
def clip_tokenizer():
    """transformers' CLIPTokenizer built from the original CLIP BPE file (same ids as SD's tokenizer)."""
    from transformers import CLIPTokenizer

    with gzip.open(_vocab_path(), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # the slice OpenAI's SimpleTokenizer uses
    base = list(_bytes_to_unicode().values())
    words = base + [b + "</w>" for b in base] + ["".join(m.split()) for m in merges]
    words += ["<|startoftext|>", "<|endoftext|>"]
    pairs = [tuple(m.split()) for m in merges]
    return CLIPTokenizer(vocab={w: i for i, w in enumerate(words)}, merges=pairs, model_max_length=CLIP_CONTEXT)


def clip_token_count(text: str) -> int:
    """Caption tokens CLIP's text encoder sees, BOS/EOS not counted."""
    return len(clip_tokenizer()(text, add_special_tokens=False, verbose=False)["input_ids"])


@dataclass(frozen=True)
class FittedCaption:
    text: str
    clip_tokens: int  # of `text`
    original_clip_tokens: int  # before shortening; equal to clip_tokens when nothing was cut

    @property
    def truncated(self) -> bool:
        return self.clip_tokens != self.original_clip_tokens


def fit_caption(text: str, max_tokens: int = CLIP_CAPTION_TOKENS) -> FittedCaption:
    """Shorten `text` to at most `max_tokens` CLIP tokens: keep whole sentences while they fit,
    else as many whole words of the first sentence as fit."""
    text = " ".join(text.split())
    original = clip_token_count(text)
    if original <= max_tokens:
        return FittedCaption(text, original, original)
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        candidate = f"{kept} {sentence}".strip()
        if clip_token_count(candidate) > max_tokens:
            break
        kept = candidate
    if not kept:
        for word in text.split():
            candidate = f"{kept} {word}".strip()
            if clip_token_count(candidate) > max_tokens:
                break
            kept = candidate
    return FittedCaption(kept, clip_token_count(kept), original)
