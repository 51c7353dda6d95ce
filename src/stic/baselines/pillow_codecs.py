"""Still-image baselines through Pillow and its plugins: JPEG, WebP, AVIF, HEIC, JPEG 2000, JPEG XL.

AVIF and HEIC are ISOBMFF containers: bpp counts the whole file; `stream_bytes` is the `mdat`
payload (the coded image; decoder configuration boxes such as av1C/hvcC stay in the container part).
"""

from __future__ import annotations

import io
import math
import struct

import numpy as np
from PIL import Image, features

from stic.baselines.base import ClassicCodec, CodecUnavailableError, Coded


def mdat_payload_bytes(data: bytes) -> int:
    """Total payload size of the top-level `mdat` boxes of an ISOBMFF file (AVIF, HEIC)."""
    offset, total = 0, 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = len(data) - offset
        if size < header:
            break
        if kind == b"mdat":
            total += size - header
        offset += size
    return total


class PillowCodec(ClassicCodec):
    format: str = ""
    in_container = False

    def options(self, setting) -> dict:
        return {"quality": setting}

    def encode(self, rgb: np.ndarray, setting) -> Coded:
        self.check_available()
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, self.format, **self.options(setting))
        data = buffer.getvalue()
        return Coded(data, mdat_payload_bytes(data) if self.in_container else len(data))

    def decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))


def _require_feature(feature: str, codec: str, install: str) -> None:
    if not features.check(feature):
        raise CodecUnavailableError(
            f"{codec} needs a Pillow built with {feature} support ({install})"
        )


class JPEG(PillowCodec):
    name, format, settings = "jpeg", "JPEG", range(1, 101)

    def options(self, setting) -> dict:
        return {
            "quality": setting,
            "optimize": True,
        }  # optimised Huffman tables: free bytes


class WebP(PillowCodec):
    name, format, settings = "webp", "WEBP", range(101)

    def check_available(self) -> None:
        _require_feature("webp", "WebP", "pip install -U pillow")

    def options(self, setting) -> dict:
        return {"quality": setting, "method": 6}


class AVIF(PillowCodec):
    """libavif (aom) at speed 6, 4:2:0; `tune` selects aom's psnr tuning for the avif-psnr variant."""

    name, format, settings, in_container = "avif", "AVIF", range(101), True
    tune: str | None = None

    def check_available(self) -> None:
        _require_feature(
            "avif", "AVIF", "Pillow >= 11.2 ships libavif; pip install -U pillow"
        )

    def options(self, setting) -> dict:
        options = {"quality": setting, "speed": 6, "subsampling": "4:2:0"}
        if self.tune:
            options["advanced"] = {"tune": self.tune}
        return options


class AVIFPSNR(AVIF):
    name, tune = "avif-psnr", "psnr"


class HEIC(PillowCodec):
    """HEVC in HEIF via pillow-heif (libheif + x265), 4:2:0."""

    name, format, settings, in_container = "heic", "HEIF", range(101), True

    def check_available(self) -> None:
        try:
            import pillow_heif
        except ImportError as err:
            raise CodecUnavailableError(
                "HEIC needs pillow-heif: pip install pillow-heif"
            ) from err
        pillow_heif.register_heif_opener()

    def options(self, setting) -> dict:
        return {"quality": setting, "chroma": 420}

    def decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        self.check_available()
        return super().decode(data, width, height)


class JPEG2000(PillowCodec):
    """OpenJPEG at an explicit rate: settings are target bits per pixel on a 1 % grid, so the
    search starts right at the target and usually needs one or two encodes."""

    name, format, setting_name = "jp2", "JPEG2000", "bpp"
    settings = tuple(round(0.002 * 1.01**k, 6) for k in range(1000))  # 0.002 .. ~42 bpp

    def check_available(self) -> None:
        _require_feature("jpg_2000", "JPEG 2000", "Pillow built with OpenJPEG")

    def options(self, setting) -> dict:
        # Pillow's "rates" are compression ratios relative to 24-bit RGB
        return {
            "quality_mode": "rates",
            "quality_layers": [24 / setting],
            "irreversible": True,
            "no_jp2": True,
        }

    def start_index(self, target_bpp: float, pixels: int) -> int:
        index = math.floor(math.log(target_bpp / 0.002, 1.01))
        return min(max(index, 0), len(self.settings) - 1)


class JPEGXL(PillowCodec):
    """libjxl via pillow-jxl-plugin (quality 0..100 maps to Butteraugli distance), effort 7."""

    name, format, settings = "jxl", "JXL", range(101)

    def check_available(self) -> None:
        try:
            import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
        except ImportError as err:
            raise CodecUnavailableError(
                "JPEG XL needs pillow-jxl-plugin: pip install pillow-jxl-plugin"
            ) from err

    def options(self, setting) -> dict:
        return {"quality": setting, "effort": 7}

    def decode(self, data: bytes, width: int, height: int) -> np.ndarray:
        self.check_available()
        return super().decode(data, width, height)
