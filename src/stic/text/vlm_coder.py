"""Caption coding with a vision-language model's language model, optionally seeing x̂.

The decoder has the decoded image x̂ before it decodes the caption, so encoder and decoder can both
show x̂ to the VLM while it predicts the caption's tokens: a caption that describes what x̂ already
shows costs fewer bits. The range coding, quantisation and stream layout are exactly those of
`LMArithmeticCoder`; only the model behind its `LanguageModel` interface changes — a VLM whose fixed
prefix is the chat prompt (with x̂'s image tokens in the conditioned mode).

The mode is the section's codec id (TEXT_VLM_ARITHMETIC or TEXT_VLM_XHAT_ARITHMETIC); the
fingerprint covers the VLM's weights, the prompt, the mode and the quantisation — not x̂, which the
decoder rebuilds from the same file.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from stic import codecs
from stic.errors import FormatError, InputError, ModelMismatchError, ModelNotFoundError
from stic.models.vlm import CAPTION_PROMPT, VisionLanguageModel, cached_vlm
from stic.text.lm import CODING_THREADS, _HFSession, cache_argument
from stic.text.lm_coder import LMArithmeticCoder
from stic.threads import fixed_threads

#: the prompt whose answer is the caption (the VLM "writes" the caption after it)
#: the captioner's own prompt: coding a caption in the context it was written in costs the fewest bits
CODING_PROMPT = CAPTION_PROMPT


class VLMPromptedLM:
    """The `LanguageModel` interface LMArithmeticCoder needs, over a VLM bound to one prompt (and
    one image x̂ or none): start_ids() is the chat prefix, sessions start after it."""

    engine = "vlm"  # a float engine (transformers)

    def __init__(self, vlm: VisionLanguageModel, image: np.ndarray | None, prompt: str):
        self.vlm = vlm
        self.name = vlm.name
        self.model = vlm.model
        self.tokenizer = vlm.tokenizer
        self._inputs = vlm.prompt_inputs(image, prompt)
        self._prefix = tuple(int(t) for t in self._inputs["input_ids"][0])
        self._memo: tuple[object, torch.Tensor] | None = None

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    def start_ids(self) -> list[int]:
        return list(self._prefix)

    def fingerprint(self) -> bytes:
        return self.vlm.fingerprint()

    def session(self, prefix_ids: Sequence[int], learned=None) -> _HFSession:
        """Run the prompt (with the image) once, then continue token by token like LanguageModel."""
        if tuple(int(t) for t in prefix_ids) != self._prefix or learned is not None:
            raise ValueError("a VLM session starts only from its own prompt (no learned prefix)")
        rope = _rope_state_holder(self.model)
        if self._memo is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config.get_text_config())
            if rope is not None:
                rope.rope_deltas = None  # as in a fresh process: no offsets left by another prefill
            with torch.inference_mode(), fixed_threads(CODING_THREADS):
                out = self.model(**self._inputs, **cache_argument(self.model, cache))
            self._memo = (cache, out.logits[0, -1].float(), getattr(rope, "rope_deltas", None))
        cache, logits, deltas = self._memo
        return _VLMSession(self.model, copy.deepcopy(cache), logits.clone(), rope, deltas)


def _rope_state_holder(model: torch.nn.Module) -> torch.nn.Module | None:
    """The submodule keeping M-RoPE position offsets between calls (Qwen2-VL/2.5-VL `rope_deltas`), if any."""
    return next((m for m in model.modules() if hasattr(m, "rope_deltas")), None)


class _VLMSession(_HFSession):
    """A session whose steps use the M-RoPE offsets of its own prefill: Qwen2-VL keeps them on the
    model, where any other prefill (the captioner's generate, another coder) overwrites them, and
    a decoder in a fresh process would compute other positions."""

    def __init__(self, model, cache, logits, rope: torch.nn.Module | None, deltas):
        super().__init__(model, cache, logits)
        self._rope, self._deltas = rope, deltas

    def push(self, token_id: int) -> None:
        if self._rope is not None:
            self._rope.rope_deltas = self._deltas
        super().push(token_id)


class VLMArithmeticCoder(LMArithmeticCoder):
    """TextCoder: LM arithmetic coding driven by a VLM, text only or conditioned on x̂."""

    def __init__(self, vlm: VisionLanguageModel, image: np.ndarray | None = None, prompt: str = CODING_PROMPT):
        if image is not None and not (
            isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        ):
            raise InputError("x̂ must be an HxWx3 uint8 RGB array")
        super().__init__(VLMPromptedLM(vlm, image, prompt))
        self.vlm = vlm
        self.prompt = prompt
        self.conditioned = image is not None
        self.codec_id = codecs.TEXT_VLM_XHAT_ARITHMETIC if self.conditioned else codecs.TEXT_VLM_ARITHMETIC
        self.name = f"vlm{'+xhat' if self.conditioned else ''}:{vlm.name}"
        self._mode_fingerprint: bytes | None = None

    def fingerprint(self) -> bytes:
        """Independent of x̂ (its image tokens depend on x̂'s size): the LM coder's own fingerprint
        of the text-only prompt (VLM weights, tokenizer, prompt, quantisation, stream version),
        combined with the mode."""
        if self._mode_fingerprint is None:
            self._mode_fingerprint = mode_fingerprint(self.vlm, self.codec_id, self.prompt)
        return self._mode_fingerprint


def mode_fingerprint(vlm: VisionLanguageModel, codec_id: int, prompt: str = CODING_PROMPT) -> bytes:
    """A VLM caption section's fingerprint, computable before x̂ exists (see `fingerprint`)."""
    text_only = LMArithmeticCoder(VLMPromptedLM(vlm, None, prompt))
    h = hashlib.blake2b(digest_size=4)
    h.update(text_only.fingerprint())
    h.update(f"|{codec_id}".encode())
    return h.digest()


#: text-coder names the pipeline accepts for VLM coding: "vlm:MODEL" and "vlm-xhat:MODEL"
VLM_METHODS = {"vlm": codecs.TEXT_VLM_ARITHMETIC, "vlm-xhat": codecs.TEXT_VLM_XHAT_ARITHMETIC}


def parse_vlm_coder(name: str) -> tuple[bool, str] | None:
    """("vlm-xhat:MODEL" -> (True, MODEL)); None when `name` is not a VLM coder name."""
    method, _, model = name.partition(":")
    if method not in VLM_METHODS:
        return None
    if not model:
        raise InputError(f"text coder {method!r} needs a model: {method}:MODEL (a VLM id or directory)")
    return method == "vlm-xhat", model


def require_vlm(model: str | None, fingerprint: bytes) -> VisionLanguageModel:
    """The VLM a caption section needs; a file cannot name it (too long), the user must."""
    if model is None:
        raise ModelNotFoundError(
            f"the caption was coded by a vision-language model (fingerprint {fingerprint.hex()}); "
            "name it with --text-model (a VLM id or local directory)"
        )
    return cached_vlm(model)


def check_vlm_section(codec_id: int, fingerprint: bytes, model: str | None) -> VisionLanguageModel:
    """The VLM a caption section needs, or ModelMismatchError: checked before anything is decoded
    (the fingerprint does not depend on x̂)."""
    method = "vlm-xhat" if codec_id == codecs.TEXT_VLM_XHAT_ARITHMETIC else "vlm"
    vlm = require_vlm(model, fingerprint)
    found = mode_fingerprint(vlm, codec_id)
    if found != fingerprint:
        raise ModelMismatchError(
            f"the caption was coded with {method} and a model of fingerprint {fingerprint.hex()}, "
            f"not with {model!r} ({found.hex()})"
        )
    return vlm


class XhatVLMCoder:
    """The x̂-conditioned VLM coder before x̂ exists. Its codec id and fingerprint do not depend on
    x̂, so a file's models are checked before anything is decoded; `needs_image` tells the pipeline
    to call `given_image(x̂)` for the coder itself once the image is decoded (at encode, the
    encoder's own decode of its image bitstream: exactly the decoder's x̂)."""

    needs_image = True
    codec_id = codecs.TEXT_VLM_XHAT_ARITHMETIC

    def __init__(self, vlm: VisionLanguageModel, prompt: str = CODING_PROMPT):
        self.vlm, self.prompt = vlm, prompt
        self.name = f"vlm+xhat:{vlm.name}"

    def fingerprint(self) -> bytes:
        return mode_fingerprint(self.vlm, self.codec_id, self.prompt)

    def given_image(self, xhat: np.ndarray) -> VLMArithmeticCoder:
        return VLMArithmeticCoder(self.vlm, xhat, self.prompt)


def vlm_coder(name: str) -> VLMArithmeticCoder | XhatVLMCoder:
    """The coder a `vlm:MODEL` or `vlm-xhat:MODEL` name asks for."""
    conditioned, model = parse_vlm_coder(name)
    return XhatVLMCoder(cached_vlm(model)) if conditioned else VLMArithmeticCoder(cached_vlm(model))


def vlm_coder_for_section(codec_id: int, fingerprint: bytes, model: str | None) -> VLMArithmeticCoder | XhatVLMCoder:
    """The coder that decodes a VLM caption section (the conditioned one pending x̂), or a clear
    error: the VLM must be named (`model`) and have the section's fingerprint."""
    if not fingerprint:
        raise FormatError("corrupt caption section: a VLM-coded caption without a model fingerprint")
    vlm = check_vlm_section(codec_id, fingerprint, model)
    return XhatVLMCoder(vlm) if codec_id == codecs.TEXT_VLM_XHAT_ARITHMETIC else VLMArithmeticCoder(vlm)
