"""Decoding the checkerboard models' exact image sections (every shipped model, every file since
stic 0.2) without torch.

Why: a decoder needs no gradients and no training code, and `import torch` alone takes 1.4-1.7 s
on the 2-core machines stic is measured on, longer than decoding a 768x512 image. The symbols come
from the integer networks in numpy with CompressAI's rANS extension (stic.image.exact_entropy),
g_s runs on ONNX Runtime (stic.decode_graphs). LearnedImageCodec decodes through this class too,
so there is one decoder; only stic 0.1's float-entropy sections (codec 1) need the torch model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from stic import decode_graphs
from stic.codecs import IMAGE_LEARNED, IMAGE_LEARNED_EXACT, IMAGE_LEARNED_EXACT_STEP
from stic.errors import FormatError
from stic.image.exact_entropy import MAX_STEP, LatentDecoder
from stic.image.payload import read_payload
from stic.image.tiled import synthesize


def decoded_image(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """[3, H', W'] float (padded) -> HxWx3 uint8: clamped to [0, 1], rounded half to even as torch does."""
    x = np.clip(x[:, :height, :width], 0, 1) * np.float32(255.0)
    return np.ascontiguousarray(np.rint(x).astype(np.uint8).transpose(1, 2, 0))


class ExactImageDecoder:
    """The decoding half of an image codec for a MeanScaleCheckerboard's weights (a state dict of
    arrays): sections of codec 2 and 3. `float_codec()` gives the torch codec that reads codec 1."""

    codec_id = IMAGE_LEARNED_EXACT
    max_step = MAX_STEP

    def __init__(self, name: str, state: Mapping[str, np.ndarray], digest: bytes, float_codec: Callable[[], object]):
        self.name, self._digest, self._float_codec = name, digest, float_codec
        self.latent_channels = int(np.asarray(state["context.context_prediction.weight"]).shape[0])
        self._latents = LatentDecoder(state)
        g_s = {k: np.asarray(v, dtype=np.float32) for k, v in state.items() if k.startswith("g_s.")}
        session = decode_graphs.session("g_s", decode_graphs.digest_of(g_s), lambda: decode_graphs.synthesis_graph(g_s))
        self.synthesis = functools.partial(decode_graphs.run, session)

    @classmethod
    def from_file(cls, name: str, path: Path, digest: bytes, float_codec: Callable[[], object]) -> ExactImageDecoder:
        """From a shipped model's safetensors file (fp16 weights, read as float32)."""
        from safetensors.numpy import load_file

        state = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in load_file(str(path)).items()}
        return cls(name, state, digest, float_codec)

    def fingerprint(self) -> bytes:
        return self._digest[:4]

    def decompress(self, data: bytes, width: int, height: int, codec_id: int | None = None) -> np.ndarray:
        codec_id = self.codec_id if codec_id is None else codec_id
        if codec_id == IMAGE_LEARNED:  # stic 0.1: float entropy parameters, the torch model's
            return self._float_codec().decompress(data, width, height, codec_id)
        if codec_id not in (IMAGE_LEARNED_EXACT, IMAGE_LEARNED_EXACT_STEP):
            raise FormatError(f"image model {self.name} cannot decode an image section of codec {codec_id}")
        strings, shape, step = read_payload(data, width, height, codec_id, 3, self.latent_channels, self.max_step)
        try:
            y_hat = self._latents.latents(strings, shape, step)
        except (ValueError, IndexError) as exc:
            raise FormatError(f"image payload could not be decoded by {self.name}: {exc}") from exc
        return decoded_image(synthesize(self.synthesis, y_hat), height, width)
