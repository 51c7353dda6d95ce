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

    #: the finest quantisation step `compress` takes (0: only the model's own)
    max_step: int

    def compress(self, image: np.ndarray, search_steps: int = 0, progress: bool = False,
                 max_bpp: float | None = None, step: int = 0) -> bytes:
        """Code an HxWx3 uint8 RGB array. The container stores width and height, so the
        payload need not. `search_steps` > 0 spends encode time on a better payload for the same
        decoder (a codec that cannot search raises InputError), at most `max_bpp` bits per pixel
        when given. `step` (1..max_step) quantises finer: more bits, section id `codec_id_for(step)`."""

    def codec_id_for(self, step: int) -> int:
        """The image section's codec id for a payload made with `step`."""

    def decompress(self, data: bytes, width: int, height: int) -> np.ndarray:
        """Return the HxWx3 uint8 RGB reconstruction, exactly width x height, deterministic."""
