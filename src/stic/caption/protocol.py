"""The one interface every captioner (VLM, precomputed file, user text) implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from stic.caption.clip_tokens import FittedCaption


@runtime_checkable
class Captioner(Protocol):
    #: short human name, e.g. "vlm:SmolVLM-256M-Instruct" or "file:kodak_llava15.csv"
    name: str

    def caption(self, image: np.ndarray, source: str | None = None) -> FittedCaption:
        """Describe an HxWx3 uint8 RGB image; `source` is its file name, which captioners that
        look captions up (precomputed files) need. The caption is already fitted to CLIP's window."""
