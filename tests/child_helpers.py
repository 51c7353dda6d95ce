"""Helpers shared by tests/test_cross_machine.py and its child processes."""

import hashlib

import torch


def symbols_digest(data: bytes) -> str:
    """SHA-256 of a .stic file's decoded image latents in the exact engine's fixed point (what
    the entropy decoder produced: symbols and exact means), independent of the float g_s."""
    from stic.codecs import IMAGE_LEARNED_EXACT_STEP
    from stic.container import SECTION_IMAGE, unpack
    from stic.image import exact_entropy
    from stic.image.learned import unpack_strings
    from stic.image.registry import codec_for_fingerprint

    file = unpack(data)
    section = file.section(SECTION_IMAGE)
    model = codec_for_fingerprint(section.fingerprint).model
    payload, step = section.payload, 0
    if section.codec_id == IMAGE_LEARNED_EXACT_STEP:
        payload, step = payload[1:], payload[0]
    strings = unpack_strings(payload, 3)
    shape = (-(-file.height // 64), -(-file.width // 64))
    with torch.no_grad():
        y_hat = exact_entropy.decompress_latents(model, exact_entropy.ExactEntropyParameters(model), strings, shape, step)
    fixed = torch.round(y_hat.double() * (1 << exact_entropy.OUT_BITS)).to(torch.int64)
    return hashlib.sha256(fixed.numpy().tobytes()).hexdigest()
