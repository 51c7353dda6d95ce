"""What every classic baseline codec provides, so one rate control drives them all.

A codec exposes an ordered list of `settings` (lowest rate first: JPEG quality 1..100, x265 QP
51..0, ...), `encode(rgb, setting)` returning the real file bytes plus the size of the coded
stream inside any container, and `decode(data, width, height)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stic.errors import SticError


class CodecUnavailableError(SticError):
    """A baseline codec's library or binary is not installed; the message says what to install."""


class TargetUnreachableError(SticError):
    """A codec's lowest-rate setting still produces a file larger than the target."""

    def __init__(self, message: str, lowest_bpp: float):
        super().__init__(message)
        self.lowest_bpp = lowest_bpp


@dataclass(frozen=True)
class Coded:
    #: the complete file a user would store (what bpp is computed from)
    data: bytes
    #: bytes of the coded image data alone (e.g. the ISOBMFF `mdat` payload of AVIF/HEIC);
    #: equal to len(data) for raw streams
    stream_bytes: int

    @property
    def file_bytes(self) -> int:
        return len(self.data)


class ClassicCodec:
    name: str = ""
    #: ordered from the lowest to the highest rate
    settings: Sequence = ()
    #: what a setting means, for reports ("quality", "qp", "bpp")
    setting_name: str = "quality"
    #: largest stride of the rate search's galloping phase (small where high-rate encodes are slow)
    max_step: int = 1 << 30

    def check_available(self) -> None:
        """Raise CodecUnavailableError naming what to install if the codec cannot run here."""

    def encode(self, rgb: np.ndarray, setting) -> Coded:
        raise NotImplementedError

    def decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        raise NotImplementedError

    def start_index(self, target_bpp: float, pixels: int) -> int:
        """Where the rate search starts: the lowest rate (cheapest encodes, and the targets here are
        low); codecs whose setting predicts the rate override this."""
        return 0


def pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """Replicate the last row/column so both sides are even (4:2:0 encoders refuse odd sizes)."""
    height, width = rgb.shape[:2]
    return np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
