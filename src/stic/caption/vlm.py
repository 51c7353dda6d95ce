"""Vision-language models through transformers: the captioner, and the model the VLM caption coder
(stic.text.vlm_coder) runs — the paper's "one LMM" that both describes the image and codes the words.

Any model with an `AutoProcessor` and an image-text-to-text auto class loads by id or local
directory (SmolVLM/Idefics3, Qwen2-VL/2.5-VL, LLaVA, LLaVA-NeXT, ...). Captioning is greedy, so the
same image always gets the same caption; the caption is then fitted to CLIP's 77-token window.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stic.caption.clip_tokens import CLIP_CAPTION_TOKENS, FittedCaption, fit_caption
from stic.errors import ModelNotFoundError
from stic.text.lm import model_digest

#: asks for about what CLIP can read (75 tokens ≈ 55 words) in plain declarative sentences
DEFAULT_PROMPT = "Describe this image in two or three sentences of at most 50 words in total."


class VisionLanguageModel:
    """A VLM and its processor; builds the chat-formatted inputs both captioner and coder use."""

    def __init__(self, name: str, model: torch.nn.Module, processor):
        self.name = name
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self._fingerprint: bytes | None = None

    def fingerprint(self) -> bytes:
        """4 bytes over the config, the tokenizer, every weight and the image processor's settings
        (another resize or normalisation gives other image tokens, hence other probabilities)."""
        if self._fingerprint is None:
            h = hashlib.blake2b(model_digest(self.model, self.tokenizer), digest_size=4)
            settings = getattr(self.processor, "image_processor", None)
            if settings is not None:
                h.update(json.dumps(settings.to_dict(), sort_keys=True, default=str).encode())
            self._fingerprint = h.digest()
        return self._fingerprint

    def prompt_inputs(self, image: np.ndarray | None, prompt: str) -> dict[str, torch.Tensor]:
        """Model inputs for one user turn (the image, if any, then `prompt`), ending where the
        assistant's answer starts."""
        content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": prompt}]
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        images = [Image.fromarray(image)] if image is not None else None
        return dict(self.processor(text=text, images=images, return_tensors="pt"))


def load_vlm(name_or_dir: str) -> VisionLanguageModel:
    """Load a VLM by model id or local directory (float32, CPU)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(name_or_dir)
        model = AutoModelForImageTextToText.from_pretrained(name_or_dir, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot load vision-language model {name_or_dir!r} (give a local transformers "
            f"directory or a reachable model id; none ships offline): {exc}"
        ) from exc
    return VisionLanguageModel(Path(name_or_dir).name or name_or_dir, model, processor)


@lru_cache(maxsize=2)
def cached_vlm(model: str) -> VisionLanguageModel:
    """VLMs are loaded once per process: the captioner and the caption coder share one."""
    return load_vlm(model)


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
        inputs = self.vlm.prompt_inputs(image, self.prompt)
        with torch.inference_mode():
            out = self.vlm.model.generate(
                **inputs, do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens
            )
        answer = out[0, inputs["input_ids"].shape[1] :]
        text = self.vlm.tokenizer.decode(answer, skip_special_tokens=True).strip()
        return fit_caption(text, self.max_clip_tokens)
