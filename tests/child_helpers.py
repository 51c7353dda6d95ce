"""Helpers shared by tests/test_cross_machine.py and its child processes."""

import hashlib

import numpy as np


def symbols_digest(data: bytes) -> str:
    """SHA-256 of a .stic file's decoded image latents in the exact engine's fixed point (what
    the entropy decoder produced: symbols and exact means), independent of the float g_s."""
    from stic.container import SECTION_IMAGE, unpack
    from stic.image import exact_entropy
    from stic.image.payload import read_payload
    from stic.image.registry import codec_for_fingerprint

    file = unpack(data)
    section = file.section(SECTION_IMAGE)
    codec = codec_for_fingerprint(section.fingerprint)
    strings, shape, step = read_payload(section.payload, file.width, file.height, section.codec_id, 3,
                                        codec.latent_channels, codec.max_step)
    y_hat = exact_entropy.LatentDecoder(codec.model.state_arrays()).latents(strings, shape, step)
    fixed = np.rint(y_hat.astype(np.float64) * (1 << exact_entropy.OUT_BITS)).astype(np.int64)
    return hashlib.sha256(fixed.tobytes()).hexdigest()
