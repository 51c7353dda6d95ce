"""Pick the captioner from what the user gave: a VLM, a caption file, or the caption itself."""

from __future__ import annotations

from stic.caption.clip_tokens import CLIP_CAPTION_TOKENS
from stic.caption.protocol import Captioner
from stic.errors import InputError


def make_captioner(
    *,
    model: str | None = None,
    text: str | None = None,
    file: str | None = None,
    prompt: str | None = None,
    max_clip_tokens: int = CLIP_CAPTION_TOKENS,
    device: str | None = None,
    dtype: str | None = None,
) -> Captioner | None:
    """Exactly one of `model` (VLM id or directory, placed by `device` and `dtype`: see
    stic.placement), `text` or `file` (CSV/JSON); None if none."""
    given = [name for name, value in (("captioner", model), ("caption", text), ("caption file", file)) if value is not None]
    if len(given) > 1:
        raise InputError(f"give one caption source, not {' and '.join(given)}")
    if text is not None:
        from stic.caption.fixed import TextCaptioner

        return TextCaptioner(text, max_clip_tokens)
    if file is not None:
        from stic.caption.fixed import PrecomputedCaptioner

        return PrecomputedCaptioner(file, max_clip_tokens)
    if model is not None:
        from stic.caption.vlm import DEFAULT_PROMPT, VLMCaptioner
        from stic.models.vlm import captioner_vlm

        return VLMCaptioner(captioner_vlm(model, device, dtype), prompt or DEFAULT_PROMPT, max_clip_tokens=max_clip_tokens)
    return None
