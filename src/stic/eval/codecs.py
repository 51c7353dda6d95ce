"""The codecs `stic eval` compares, behind one call: code an image at each target bpp, decode it.

Classic codecs go through `stic.baselines.encode_to_bpp` (their encodes are shared across the
targets of one image); `stic` goes through `stic.pipeline.encode(bpp=...)`, caption included.
Either way the bpp is the real file's bytes x 8 / pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from stic.baselines import (
    CLASSIC_CODECS,
    SizeCache,
    TargetUnreachableError,
    encode_to_bpp,
    get_classic_codec,
)
from stic.errors import InputError, ModelNotFoundError

STIC = "stic"


@dataclass
class Outcome:
    """One (image, codec, target) result before metrics."""

    status: str  # "ok" | "unreachable"
    bpp: float | None = None
    stream_bpp: float | None = None
    file_bytes: int | None = None
    stream_bytes: int | None = None
    caption_bytes: int | None = None
    setting: str = ""
    encodes: int | None = None
    encode_s: float | None = None
    decode_s: float | None = None
    decoded: np.ndarray | None = field(default=None, repr=False)
    note: str = ""


def known_codecs() -> list[str]:
    return [STIC, *CLASSIC_CODECS]


def check_codec(name: str) -> None:
    """Fail before a long run starts if a codec is unknown or its library/binary/models are missing."""
    if name == STIC:
        from stic.image.registry import shipped_models

        if not shipped_models():
            raise ModelNotFoundError(
                "the stic codec has no shipped image models on this installation"
            )
        return
    get_classic_codec(name).check_available()


class ClassicRunner:
    def __init__(self, name: str, rgb: np.ndarray):
        self.codec = get_classic_codec(name)
        self.rgb = rgb
        self.cache = SizeCache(self.codec, rgb)

    def __call__(self, target: float) -> Outcome:
        height, width = self.rgb.shape[:2]
        started = time.perf_counter()
        try:
            result = encode_to_bpp(self.codec, self.rgb, target, self.cache)
        except TargetUnreachableError as err:
            return Outcome("unreachable", note=str(err))
        encode_s = time.perf_counter() - started
        started = time.perf_counter()
        decoded = self.codec.decode(result.coded.data, width, height)
        return Outcome(
            "ok",
            result.bpp,
            result.stream_bpp,
            result.coded.file_bytes,
            result.coded.stream_bytes,
            None,
            f"{self.codec.setting_name}={result.setting}",
            result.encodes,
            encode_s,
            time.perf_counter() - started,
            decoded,
        )


class SticRunner:
    """`options` are `stic.pipeline.encode` keywords (text_coder, family, refiner); the refiner
    defaults to the one `stic encode` writes, and decoding applies it, as `stic decode` does."""

    def __init__(self, rgb: np.ndarray, caption: str | None, options: dict | None = None):
        from stic.pipeline import AUTO

        self.rgb, self.caption = rgb, caption
        self.options = {k: v for k, v in (options or {}).items() if v is not None}
        self.options.setdefault("refiner", AUTO)

    def _vlm(self) -> str | None:
        """The VLM a `vlm:`/`vlm-xhat:` caption needs at decode (a file cannot name it)."""
        from stic.text.vlm_coder import parse_vlm_coder

        coder = self.options.get("text_coder")
        parsed = parse_vlm_coder(coder) if isinstance(coder, str) else None
        return parsed[1] if parsed else None

    def _diffusion_model(self) -> str | None:
        """The model of a `diffusion:MODEL` refiner, which the decoder must be told (a file stores only
        its fingerprint)."""
        refiner = self.options.get("refiner")
        if isinstance(refiner, str) and refiner.startswith("diffusion:"):
            return refiner.partition(":")[2]
        return None

    def __call__(self, target: float) -> Outcome:
        from stic.container import SECTION_CAPTION, SECTION_IMAGE
        from stic.pipeline import decode, encode

        started = time.perf_counter()
        try:
            encoded = encode(self.rgb, bpp=target, caption=self.caption, **self.options)
        except InputError as err:
            if str(err).startswith("no model reaches"):
                return Outcome("unreachable", note=str(err))
            raise
        encode_s = time.perf_counter() - started
        started = time.perf_counter()
        decoded = decode(encoded.data, text_model=self._vlm(), refiner_model=self._diffusion_model()).image
        if decoded.ndim == 2:  # a grey photo decodes grey; metrics compare RGB arrays
            decoded = np.repeat(decoded[:, :, None], 3, axis=2)
        decode_s = time.perf_counter() - started
        image = encoded.file.section(SECTION_IMAGE)
        caption = encoded.file.section(SECTION_CAPTION)
        pixels = self.rgb.shape[0] * self.rgb.shape[1]
        return Outcome(
            "ok",
            encoded.bpp,
            8 * len(image.payload) / pixels,
            len(encoded.data),
            len(image.payload),
            len(caption.payload) if caption else None,
            f"model={encoded.image_model}",
            None,
            encode_s,
            decode_s,
            decoded,
        )


def runner_for(name: str, rgb: np.ndarray, caption: str | None, stic_options: dict | None = None):
    """A callable `target_bpp -> Outcome` for one image (keeps per-image state such as encode caches)."""
    return (
        SticRunner(rgb, caption, stic_options)
        if name == STIC
        else ClassicRunner(name, rgb)
    )
