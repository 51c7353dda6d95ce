"""The VLM captioner: greedy captions from a vision-language model (stic.models.vlm), so the same
image always gets the same caption, fitted to CLIP's 77-token window.
"""

from __future__ import annotations

import numpy as np
import torch

from stic.caption.clip_tokens import CLIP_CAPTION_TOKENS, FittedCaption, fit_caption
from stic.models.vlm import CAPTION_PROMPT, VisionLanguageModel
from stic.threads import fixed_threads

#: intra-op threads while captioning on the CPU (float sums depend on the count)
CAPTION_THREADS = 2
#: the captioning prompt (stic.models.vlm.CAPTION_PROMPT, which the VLM caption coder uses too)
DEFAULT_PROMPT = CAPTION_PROMPT


class VLMCaptioner:
    """Greedy VLM captions, fitted to CLIP's window (the prompt asks for that length already)."""

    def __init__(
        self,
        vlm: VisionLanguageModel,
        prompt: str = DEFAULT_PROMPT,
        max_new_tokens: int = 96,
        max_clip_tokens: int = CLIP_CAPTION_TOKENS,
    ):
        self.vlm = vlm
        self.name = f"vlm:{vlm.name}"
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.max_clip_tokens = max_clip_tokens

    def caption(self, image: np.ndarray, source: str | None = None) -> FittedCaption:
        model = self.vlm.model
        inputs = {
            name: value.to(model.device, model.dtype) if value.is_floating_point() else value.to(model.device)
            for name, value in self.vlm.prompt_inputs(image, self.prompt).items()
        }
        # a fixed thread count: on the CPU the same image gets the same caption on every run
        with torch.inference_mode(), fixed_threads(CAPTION_THREADS):
            out = model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens)
        answer = out[0, inputs["input_ids"].shape[1] :]
        text = self.vlm.tokenizer.decode(answer, skip_special_tokens=True).strip()
        return fit_caption(text, self.max_clip_tokens)
