"""The interface every image codec implements (learned now; classic baselines later)."""

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ImageCodec(Protocol):
    #: short human name, e.g. "stic-q2"; shown in errors and `stic info`
    name: str
    #: id written in the container's image section (see stic.codecs)
    codec_id: int

    def fingerprint(self) -> bytes:
        """4 bytes identifying the weights (and anything else that changes the bits)."""

    def compress(self, image: np.ndarray, search_steps: int = 0, progress: bool = False,
                 max_bpp: float | None = None) -> bytes:
        """Code an HxWx3 uint8 RGB array. The container stores width and height, so the
        payload need not. `search_steps` > 0 spends encode time on a better payload for the same
        decoder (a codec that cannot search raises InputError), at most `max_bpp` bits per pixel
        when given."""

    def decompress(self, data: bytes, width: int, height: int) -> np.ndarray:
        """Return the HxWx3 uint8 RGB reconstruction, exactly width x height, deterministic."""
