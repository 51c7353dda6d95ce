"""Learned prefixes: key/value states trained to prime a caption LM (prefix tuning).

A caption is cheap to code when the LM has just read a few texts like it, but a written preamble
of ten example captions is ~770 tokens the LM attends to at every step. A learned prefix puts the
same kind of priming into a few dozen positions of every layer's KV cache, trained on an
in-domain corpus with the model's weights frozen (see stic.text.adapt): fewer bits and faster
steps than the examples preamble. A prefix belongs to one model: it records that model's digest
and is refused by any other. Stored as safetensors, never pickled.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stic.errors import InputError, ModelMismatchError, ModelNotFoundError

#: Prefixes that ship with stic, trained on corpus/llava_style/ (docs/caption_coding.md).
SHIPPED_DIR = Path(__file__).resolve().parent / "prefixes"
_FORMAT = "stic-lm-prefix/1"


@dataclass(frozen=True, eq=False)
class LearnedPrefix:
    """Per-layer keys and values [layers, kv heads, positions, head dim] (keys after rotary
    embedding), and the digest of the model they were trained for. Held as float32 numpy arrays
    (torch tensors given are converted), so that decoding a caption needs no torch."""

    keys: np.ndarray
    values: np.ndarray
    model_digest: str  # hex of the model's identity digest (`digest()` of its language model)

    def __post_init__(self):
        for name in ("keys", "values"):
            value = getattr(self, name)
            if hasattr(value, "detach"):  # a torch tensor, maybe one being trained
                value = value.detach().cpu().numpy()
            object.__setattr__(self, name, np.ascontiguousarray(np.asarray(value, dtype=np.float32)))

    @property
    def length(self) -> int:
        return int(self.keys.shape[2])

    def digest(self) -> bytes:
        """What the coder's fingerprint covers: the exact numbers the LM will see."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> bytes:  # every session start asks: hash the ~1.5 MB once
        h = hashlib.blake2b(digest_size=8)
        for tensor in (self.keys, self.values):
            h.update(str(tuple(tensor.shape)).encode())
            h.update(tensor.tobytes())
        return h.digest()

    def check_model(self, lm) -> None:
        """Refuse a prefix trained for another model than `lm` (a language model of
        stic.text.lm or stic.text.exact_model), or of the wrong shape for it."""
        digest, name = lm.digest(), lm.name
        if self.model_digest != digest.hex():
            raise ModelMismatchError(
                f"the learned prefix was trained for another language model than {name!r} "
                f"(its model digest {self.model_digest[:12]}..., this model's {digest.hex()[:12]}...)"
            )
        expected = lm.prefix_shape(self.length)
        if tuple(self.keys.shape) != expected or tuple(self.values.shape) != expected:
            raise ModelMismatchError(
                f"learned prefix has shape {tuple(self.keys.shape)}; model {name!r} needs "
                f"(layers, kv heads, positions, head dim) = {expected}"
            )

    def save(self, path: Path) -> None:
        """fp16 safetensors with the model digest in the metadata (written atomically)."""
        from safetensors.numpy import save_file

        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        save_file(
            {"keys": self.keys.astype(np.float16), "values": self.values.astype(np.float16)},
            str(partial),
            metadata={"format": _FORMAT, "model_digest": self.model_digest},
        )  # fmt: skip
        partial.replace(path)


def load_prefix(path: Path | str) -> LearnedPrefix:
    """Read a prefix file; float32 tensors (rounded through fp16 exactly as stored)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"learned prefix not found: {path}")
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a learned-prefix file (safetensors): {exc}") from exc
    if metadata.get("format") != _FORMAT or set(tensors) != {"keys", "values"}:
        raise InputError(f"{path} is not a stic learned-prefix file (format {_FORMAT})")
    keys, values = tensors["keys"].astype(np.float32), tensors["values"].astype(np.float32)
    if keys.ndim != 4 or keys.shape != values.shape:
        raise InputError(f"{path}: keys and values must share one 4-d shape")
    return LearnedPrefix(keys, values, metadata.get("model_digest", ""))


def has_shipped_prefix(model_name: str) -> bool:
    return (SHIPPED_DIR / f"{model_name}.safetensors").is_file()


@functools.lru_cache(maxsize=4)
def shipped_prefix(model_name: str) -> LearnedPrefix:
    """The prefix stic ships for an offline default model (read once per process)."""
    path = SHIPPED_DIR / f"{model_name}.safetensors"
    if not path.is_file():
        known = sorted(p.stem for p in SHIPPED_DIR.glob("*.safetensors"))
        raise ModelNotFoundError(
            f"no learned prefix ships for language model {model_name!r} (shipped: "
            f"{', '.join(known) or 'none'}); train one with `stic text adapt` or use another preamble"
        )
    return load_prefix(path)
