"""One rate control for every classic codec: the highest-rate setting whose real file fits.

Bits are the real file's bytes x 8 divided by the pixel count. The search assumes file size grows
with the setting (true for these codecs up to rare one-step wiggles) and gallops then bisects from
the codec's start index; every size it acts on was measured. If even the lowest-rate setting is
too large, it says so (TargetUnreachableError) instead of overshooting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stic.baselines.base import ClassicCodec, Coded, TargetUnreachableError
from stic.errors import InputError


@dataclass(frozen=True)
class RateResult:
    coded: Coded
    setting: object
    bpp: float
    stream_bpp: float
    #: encodes this search ran (cache hits excluded)
    encodes: int


class SizeCache:
    """Encodes of one image by one codec, shared across several targets."""

    def __init__(self, codec: ClassicCodec, rgb: np.ndarray):
        self.codec, self.rgb, self.results, self.encodes = codec, rgb, {}, 0

    def __call__(self, index: int) -> Coded:
        if index not in self.results:
            self.results[index] = self.codec.encode(
                self.rgb, self.codec.settings[index]
            )
            self.encodes += 1
        return self.results[index]


def encode_to_bpp(
    codec: ClassicCodec,
    rgb: np.ndarray,
    target_bpp: float,
    cache: SizeCache | None = None,
) -> RateResult:
    if target_bpp <= 0:
        raise InputError(f"target bpp must be positive, got {target_bpp}")
    codec.check_available()
    cache = cache or SizeCache(codec, rgb)
    before = cache.encodes
    pixels = rgb.shape[0] * rgb.shape[1]
    budget = int(target_bpp * pixels // 8)
    fits = lambda index: cache(index).file_bytes <= budget
    count = len(codec.settings)
    # start from the codec's guess or the best setting already measured for this image (an earlier,
    # lower target), whichever is higher
    measured = [
        index for index, coded in cache.results.items() if coded.file_bytes <= budget
    ]
    start = min(max(codec.start_index(target_bpp, pixels), *measured, 0), count - 1)
    grow = lambda step: min(step * 2, codec.max_step)
    # invariant: low fits (or is -1), high does not fit (or is `count`)
    if fits(start):
        low, step, high = start, 1, count
        while low + step < count and fits(low + step):
            low, step = low + step, grow(step)
        high = min(low + step, count)
    else:
        high, step, low = start, 1, -1
        while high - step >= 0 and not fits(high - step):
            high, step = high - step, grow(step)
        low = max(high - step, -1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    if low < 0:
        lowest = 8 * cache(0).file_bytes / pixels
        raise TargetUnreachableError(
            f"{codec.name} cannot reach {target_bpp} bpp on this {rgb.shape[1]}x{rgb.shape[0]} image: its "
            f"lowest rate ({codec.setting_name} {codec.settings[0]}) gives {lowest:.4f} bpp",
            lowest,
        )
    coded = cache(low)
    return RateResult(
        coded,
        codec.settings[low],
        8 * coded.file_bytes / pixels,
        8 * coded.stream_bytes / pixels,
        cache.encodes - before,
    )


def encode_within_bytes(codec: ClassicCodec, rgb: np.ndarray, max_bytes: int, cache: SizeCache | None = None) -> RateResult:
    """The codec's largest file of at most `max_bytes` (e.g. another codec's file, byte for byte).
    Half a byte over the budget as bits per pixel: `encode_to_bpp` floors it back to exactly
    `max_bytes`, where 8 * max_bytes / pixels could come back a byte short from float rounding."""
    pixels = rgb.shape[0] * rgb.shape[1]
    return encode_to_bpp(codec, rgb, (8 * max_bytes + 4) / pixels, cache)
