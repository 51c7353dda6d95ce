"""The learned codec's image payload: CompressAI's strings (one per entropy model), each but the
last prefixed by a varint length, after a quantisation-step byte for IMAGE_LEARNED_EXACT_STEP.
Torch-free, so that the decoder can read it without torch."""

from __future__ import annotations

from stic.codecs import IMAGE_LEARNED_EXACT_STEP
from stic.container import decode_varint, encode_varint
from stic.errors import FormatError

#: every architecture stic codes with downsamples by 16 (analysis) x 4 (hyper-analysis)
PAD_MULTIPLE = 64


def pack_strings(strings: list[bytes]) -> bytes:
    """Concatenate strings; every one but the last carries a varint length."""
    parts = [encode_varint(len(s)) + s for s in strings[:-1]]
    return b"".join(parts) + strings[-1]


def unpack_strings(data: bytes, count: int) -> list[bytes]:
    strings, pos = [], 0
    for _ in range(count - 1):
        length, pos = decode_varint(data, pos, "image payload length field")
        if pos + length > len(data):
            raise FormatError("image payload truncated: a stream is shorter than its length field")
        strings.append(data[pos : pos + length])
        pos += length
    strings.append(data[pos:])
    return strings


def padded_size(height: int, width: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def read_payload(
    data: bytes, width: int, height: int, codec_id: int, count: int, channels: int, max_step: int
) -> tuple[list[bytes], tuple[int, int], int]:
    """(strings, latent shape (of z), quantisation step) of a payload with `count` strings.

    CompressAI's rANS decoder does not check bounds: a corrupt stream would read past its end.
    Each string is followed by zero bytes enough for one 32-bit read per symbol, which keep every
    read inside the buffer (and are never reached by a valid stream, which is read front to back)."""
    if width < 1 or height < 1:
        raise FormatError(f"image size {width}x{height} is invalid")
    step = 0
    if codec_id == IMAGE_LEARNED_EXACT_STEP:
        if not data or not 1 <= data[0] <= max_step:
            raise FormatError(f"image payload names quantisation step {data[0] if data else None}, not 1..{max_step}")
        step, data = data[0], data[1:]
    ph, pw = padded_size(height, width)
    guard = bytes(4 * (ph // 16) * (pw // 16) * (channels + 1) + 64)
    strings = [s + guard for s in unpack_strings(bytes(data), count)]
    return strings, (ph // PAD_MULTIPLE, pw // PAD_MULTIPLE), step
