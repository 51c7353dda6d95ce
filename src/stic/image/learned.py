"""stic's learned image codec: a CompressAI network + its entropy models + its rANS coder.

The payload is only what the decoder cannot derive: CompressAI's strings (one per entropy model),
each but the last prefixed by a varint length. Latent shapes follow from width/height, which the
container stores. Images of any size are replicate-padded to the network's multiple and cropped
back. Entropy tables ship with the weights, and the network runs with a fixed thread count, so
decoding gives the same pixels on every run.
"""

import numpy as np
import torch
import torch.nn.functional as F

from stic.codecs import IMAGE_LEARNED, IMAGE_LEARNED_EXACT, IMAGE_LEARNED_EXACT_STEP
from stic.errors import FormatError, InputError
from stic.image.architectures import string_count
from stic.image.decoder import ExactImageDecoder, decoded_image
from stic.image.exact_entropy import MAX_STEP
from stic.image.latent_search import Objective, compress_latents, search_latents
from stic.image.payload import pack_strings, padded_size, read_payload
from stic.threads import fixed_threads

#: intra-op threads used by compress/decompress: fixed so that results never depend on the host's default
CODEC_THREADS = 2


def padded_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float in [0,1], replicate-padded to the network's multiple."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError("the image codec takes an HxWx3 uint8 RGB array")
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise InputError(f"image of size {w}x{h} is empty")
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float().div_(255.0)
    ph, pw = padded_size(h, w)
    return F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")


def to_image(x: torch.Tensor, height: int, width: int) -> np.ndarray:
    return decoded_image(x[0].numpy(), height, width)


class LearnedImageCodec:
    """An ImageCodec around a CompressAI model whose entropy tables are already built.

    Checkerboard models (all shipped ones) write IMAGE_LEARNED_EXACT: their entropy parameters
    are computed in integer arithmetic (stic.image.exact_entropy), so the symbols decode alike
    on every machine; they still read stic 0.1's IMAGE_LEARNED sections. With a finer
    quantisation step (`step` > 0, for rates between and above the shipped models') they write
    IMAGE_LEARNED_EXACT_STEP, whose payload starts with the step. Other architectures write
    IMAGE_LEARNED (float entropy parameters) and have no steps.
    """

    def __init__(self, name: str, model: torch.nn.Module, weights_digest: bytes, objective: Objective | None = None):
        self.name = name
        self.model = model.eval()
        self._digest = weights_digest
        #: what latent search minimises for these weights (from their training loss); None: unknown
        self.objective = objective
        #: channels of the main latent (the hyperprior's are fewer per position)
        self.latent_channels = int(getattr(model, "M", getattr(model, "N", 0)))
        self.codec_id = IMAGE_LEARNED_EXACT if hasattr(model, "decompress_float") else IMAGE_LEARNED
        self._exact_decoder: ExactImageDecoder | None = None

    def fingerprint(self) -> bytes:
        return self._digest[:4]

    @property
    def max_step(self) -> int:
        """The finest quantisation step this model codes with (0: only its own)."""
        return MAX_STEP if self.codec_id == IMAGE_LEARNED_EXACT else 0

    def codec_id_for(self, step: int) -> int:
        """The image section's codec id for a payload made with `step`."""
        return IMAGE_LEARNED_EXACT_STEP if step else self.codec_id

    def compress(self, image: np.ndarray, search_steps: int = 0, progress: bool = False,
                 max_bpp: float | None = None, step: int = 0) -> bytes:
        """`search_steps` > 0 first optimises the latents for this image (stic.image.latent_search):
        slower encoding, the same decoder; `max_bpp` caps the searched latents' rate. `step` > 0
        quantises the latents finer (more bits, see exact_entropy.STEP_UNITS); not with a search."""
        if not 0 <= step <= self.max_step:
            raise InputError(f"image model {self.name} codes with steps 0..{self.max_step}, not {step}")
        if step and search_steps:
            raise InputError("latent search codes with the model's own step only")
        x = padded_tensor(image)
        with fixed_threads(CODEC_THREADS):
            if not search_steps:
                with torch.no_grad():
                    if step:  # only the checkerboard models take a step; the payload names it
                        return bytes([step]) + pack_strings([s[0] for s in self.model.compress(x, step)["strings"]])
                    return pack_strings([s[0] for s in self.model.compress(x)["strings"]])
            if self.objective is None:
                raise InputError(f"image model {self.name} does not say its training λ, which latent search needs")
            height, width = image.shape[:2]
            latents = search_latents(self.model, x, self.objective, search_steps, height, width, progress=progress,
                                     max_bpp=max_bpp)
            with torch.no_grad():
                return pack_strings(compress_latents(self.model, latents))

    @torch.no_grad()
    def decompress(self, data: bytes, width: int, height: int, codec_id: int | None = None) -> np.ndarray:
        """`codec_id`: the section's (default: what this codec writes). Exact sections decode with
        stic.image.decoder, as a decoder that holds no torch model does."""
        codec_id = self.codec_id if codec_id is None else codec_id
        readable = (self.codec_id, IMAGE_LEARNED) + ((IMAGE_LEARNED_EXACT_STEP,) if self.max_step else ())
        if codec_id not in readable:
            raise FormatError(f"image model {self.name} cannot decode an image section of codec {codec_id}")
        if codec_id != IMAGE_LEARNED:
            return self.exact_decoder().decompress(data, width, height, codec_id)
        strings, shape, _ = read_payload(data, width, height, codec_id, string_count(self.model), self.latent_channels, 0)
        with fixed_threads(CODEC_THREADS):
            try:
                if codec_id != self.codec_id:  # stic 0.1's float entropy parameters
                    x_hat = self.model.decompress_float([[s] for s in strings], shape)["x_hat"]
                else:
                    x_hat = self.model.decompress([[s] for s in strings], shape)["x_hat"]
            except (RuntimeError, ValueError, IndexError) as exc:
                raise FormatError(f"image payload could not be decoded by {self.name}: {exc}") from exc
        return to_image(x_hat, height, width)

    def exact_decoder(self) -> ExactImageDecoder:
        """The torch-free decoder of these weights (a checkerboard model's), built once."""
        if self._exact_decoder is None:
            self._exact_decoder = ExactImageDecoder(self.name, self.model.state_arrays(), self._digest, lambda: self)
        return self._exact_decoder

    @torch.no_grad()
    def estimate_bits(self, image: np.ndarray) -> float:
        """The forward() likelihood estimate of the payload size, in bits (for checks and steering)."""
        x = padded_tensor(image)
        with fixed_threads(CODEC_THREADS):
            out = self.model(x)
        return float(sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values()))
