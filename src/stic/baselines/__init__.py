"""Classic image codecs (JPEG, WebP, AVIF, HEIC, JPEG 2000, JPEG XL, x265, VVC) under one rate
control (`encode_to_bpp`): the baselines stic is measured against."""

from __future__ import annotations

from stic.baselines.base import (
    ClassicCodec,
    CodecUnavailableError,
    Coded,
    TargetUnreachableError,
)
from stic.baselines.ffmpeg_codecs import VVC, X265
from stic.baselines.pillow_codecs import (
    AVIF,
    AVIFPSNR,
    HEIC,
    JPEG,
    JPEG2000,
    JPEGXL,
    WebP,
)
from stic.baselines.rate_control import RateResult, SizeCache, encode_to_bpp, encode_within_bytes
from stic.errors import InputError

CLASSIC_CODECS: dict[str, type[ClassicCodec]] = {
    codec.name: codec
    for codec in (JPEG, WebP, AVIF, AVIFPSNR, HEIC, JPEG2000, JPEGXL, X265, VVC)
}


def get_classic_codec(name: str) -> ClassicCodec:
    try:
        return CLASSIC_CODECS[name]()
    except KeyError:
        raise InputError(
            f"unknown classic codec {name!r}; choose from {', '.join(CLASSIC_CODECS)}"
        ) from None


__all__ = [
    "CLASSIC_CODECS",
    "ClassicCodec",
    "CodecUnavailableError",
    "Coded",
    "RateResult",
    "SizeCache",
    "TargetUnreachableError",
    "encode_to_bpp",
    "encode_within_bytes",
    "get_classic_codec",
]
