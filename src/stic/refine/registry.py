"""Refiners by name, and the refine section that tells a decoder which one to run.

The section's codec id names the refiner, its fingerprint the weights, its payload the seed (varint)
then the refiner's own parameters. A decoder rebuilds the refiner from the section alone — only
the diffusion model's location may be given (`model`), since a model id is too long to store.
"""

from __future__ import annotations

import os

from stic import __version__, codecs
from stic.container import SECTION_REFINE, Section, decode_varint, encode_varint
from stic.errors import FormatError, InputError, ModelMismatchError
from stic.models.cache import ModelCache
from stic.paths import model_key
from stic.refine.identity import IdentityRefiner
from stic.refine.protocol import Refiner

#: the Real-ESRGAN networks (stic.refine.esrgan), one per refine codec id
GAN_REFINERS = tuple(name for name in codecs.REFINER_NAMES.values() if name.startswith("realesrgan"))
REFINER_CHOICES = ("identity", *GAN_REFINERS, "diffusion")
_ALIASES = {"none": "identity", "gan": "realesrgan"}
#: seeds are stored as varints; the diffusion refiner seeds tile i with (seed << 16) + i, which
#: torch's generator takes up to 2^64
MAX_SEED = 1 << 48


def diffusion_model(model: str | None = None) -> str:
    """The diffusion model to load: `model`, else $STIC_DIFFUSION_MODEL, else the default id."""
    from stic.refine.diffusion import DEFAULT_MODEL

    return model or os.environ.get("STIC_DIFFUSION_MODEL") or DEFAULT_MODEL


LOADED_PIPELINES = ModelCache("diffusion pipelines", maxsize=1)


def _pipeline(model: str, device: str | None = None, dtype: str | None = None):
    """The last diffusion pipeline loaded, keyed by (model: resolved path for a folder, device, dtype)."""
    from stic.refine.diffusion import load_pipeline

    key = model_key(model)
    return LOADED_PIPELINES.get((key, device, dtype), lambda: load_pipeline(key, device, dtype))



def get_refiner(
    name: str, *, model: str | None = None, settings=None, device: str | None = None, dtype: str | None = None
) -> Refiner:
    """`identity`, one of GAN_REFINERS or `diffusion` (also `diffusion:MODEL`); `settings` is a
    DiffusionSettings for the diffusion refiner, `device` and `dtype` place its model (stic.placement)."""
    base, _, inline_model = name.partition(":")
    base = _ALIASES.get(base, base)
    if base == "identity":
        return IdentityRefiner()
    if base in GAN_REFINERS:
        from stic.refine.esrgan import RealESRGANRefiner

        return RealESRGANRefiner(base)
    if base == "diffusion":
        from stic.refine.diffusion import DiffusionRefiner

        return DiffusionRefiner(_pipeline(diffusion_model(inline_model or model), device, dtype), settings)
    raise InputError(f"unknown refiner {name!r}; choose from {', '.join(REFINER_CHOICES)} (or none = identity)")


def refine_section(refiner: Refiner, seed: int = 0) -> Section | None:
    """The section that makes a decoder run `refiner` with `seed` (None for identity)."""
    if refiner.refiner_id is None:
        return None
    if not 0 <= seed < MAX_SEED:
        raise InputError(f"seed must be in 0..2^48-1, got {seed}")
    payload = encode_varint(seed) + refiner.params()
    return Section(SECTION_REFINE, refiner.refiner_id, payload, refiner.fingerprint(), required=False)


def refiner_for_section(
    section: Section, *, model: str | None = None, device: str | None = None, dtype: str | None = None,
    held: Refiner | None = None,
) -> tuple[Refiner, int]:
    """Rebuild the refiner and seed a refine section names (a diffusion model placed by `device`
    and `dtype`; `held`: a refiner already loaded, used when it is the one the section names);
    ModelNotFoundError if its weights are missing, ModelMismatchError if the weights found are not the
    ones the file was made for."""
    name = codecs.REFINER_NAMES.get(section.codec_id)
    if name is None:
        raise FormatError(
            f"refine section names unknown refiner id {section.codec_id} (written by a newer stic than "
            f"{__version__}?); decode with --no-refine"
        )
    seed, pos = decode_varint(section.payload, 0, "refine seed")
    if seed >= MAX_SEED:
        raise FormatError(f"refine section: seed {seed} is out of range (at most 2^48-1)")
    params = section.payload[pos:]
    same = held is not None and held.refiner_id == section.codec_id and _made_for(held, section.fingerprint)
    if name in GAN_REFINERS:
        from stic.refine.esrgan import RealESRGANRefiner

        refiner = held if same and held.params() == params else RealESRGANRefiner.from_params(name, params)
    else:
        from stic.refine.diffusion import DiffusionRefiner, DiffusionSettings

        pipe = held.pipe if same else _pipeline(diffusion_model(model), device, dtype)
        refiner = DiffusionRefiner(pipe, DiffusionSettings.from_bytes(params))  # the file's settings
    if section.fingerprint and not _made_for(refiner, section.fingerprint):
        raise ModelMismatchError(
            f"the file asks for the {name} refiner with weights {section.fingerprint.hex()}, the loaded "
            f"weights are {refiner.fingerprint().hex()}"
            + (f" ({refiner.legacy_fingerprint().hex()} as stic < 0.4 wrote it)" if name == "diffusion" else "")
            + (f" ({diffusion_model(model)}); give the right one with --refiner-model" if name == "diffusion" else "")
            + ", or decode with --no-refine"
        )
    return refiner, seed


def _made_for(refiner: Refiner, fingerprint: bytes) -> bool:
    """Whether a section's fingerprint names `refiner`'s weights (a diffusion file from stic < 0.4
    by the fingerprint those versions wrote)."""
    legacy = getattr(refiner, "legacy_fingerprint", None)
    return refiner.fingerprint() == fingerprint or (legacy is not None and legacy() == fingerprint)
