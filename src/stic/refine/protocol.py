"""The one interface every refiner implements: x̂ (+ caption, + seed) -> a better-looking image."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Refiner(Protocol):
    #: short human name, e.g. "realesrgan" or "diffusion"; shown in errors and `stic info`
    name: str
    #: id written as the refine section's codec id (see stic.codecs)
    refiner_id: int
    # Optional (not annotated: isinstance checks only the required attributes): `uses_caption`
    # (default True) says whether `refine` reads the caption; a refiner that does not may run while
    # the caption is still decoding beside the image (stic.pipeline).

    def fingerprint(self) -> bytes:
        """4 bytes identifying the weights (b"" for refiners without a model)."""

    def params(self) -> bytes:
        """The settings that change the output (guidance, steps, ...), as stored in the file."""

    def refine(self, image: np.ndarray, caption: str | None, seed: int) -> np.ndarray:
        """Return an HxWx3 uint8 RGB image of x̂'s size; deterministic for a given seed."""
