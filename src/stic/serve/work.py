"""What the web page runs: code a photo with stic and with AVIF and JPEG at the same byte count,
or decode a .stic file. Plain functions returning a JSON-ready report and the files it names; the
web layer only stores and serves them.

With a max side, everything is compared at the shrunk size the photo was coded at (a photo above
stic's 16.8 MP limit could not be shown whole anyway)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np
from PIL import Image

#: the classic codecs shown beside stic, each at its largest setting whose file is no larger
COMPARED = (("avif", "AVIF", ".avif"), ("jpeg", "JPEG", ".jpg"))


@dataclass
class Outcome:
    """A report for the page and the files it names (`report["panels"][i]["image"]`, downloads)."""

    report: dict
    files: dict[str, bytes] = field(default_factory=dict)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _panel(key: str, label: str, size: int | None, pixels: int, note: str = "", download: str | None = None,
           image: str | None = None) -> dict:  # fmt: skip
    return {"key": key, "label": label, "image": image or f"{key}.png", "bytes": size,
            "bpp": None if size is None else 8 * size / pixels, "note": note, "download": download}  # fmt: skip


def _classic(key: str, label: str, suffix: str, rgb: np.ndarray, budget: int, stem: str, out: Outcome) -> dict:
    """The codec's largest file within `budget` bytes; where even its smallest file is larger, that
    smallest file, said so in the panel's note."""
    from stic.baselines import CodecUnavailableError, TargetUnreachableError, encode_within_bytes, get_classic_codec

    codec = get_classic_codec(key)
    height, width = rgb.shape[:2]
    try:
        coded, note = encode_within_bytes(codec, rgb, budget).coded, ""
    except TargetUnreachableError:
        coded = codec.encode(rgb, codec.settings[0])
        note = f"cannot go this small: its smallest file is {len(coded.data) / budget:.1f}x stic's"
    except CodecUnavailableError as err:
        return _panel(key, label, None, width * height, f"not available here: {err}")
    out.files[f"{key}.png"] = png_bytes(codec.decode(coded.data, width, height))
    out.files[stem + suffix] = coded.data
    return _panel(key, label, len(coded.data), width * height, note, stem + suffix)


def compress(
    upload: bytes,
    filename: str,
    *,
    bpp: float | None = None,
    quality: int | None = None,
    caption: str | None = None,
    max_side: int | None = None,
) -> Outcome:
    """Code the uploaded photo as `stic encode` would (`bpp` or `quality`, an optional caption and
    longest side, the default refiner), decode the file as any reader would, and code the same
    pixels with AVIF and JPEG within stic's byte count."""
    from stic.caption.registry import make_captioner
    from stic.fileinfo import describe
    from stic.image.io import read_image
    from stic.pipeline import decode, encode

    image, original_size = read_image(upload, max_side=max_side, name=filename)
    if caption:  # fitted to the refiner's text window exactly as `stic encode --caption` fits it
        caption = make_captioner(text=caption).caption(image, filename).text
    started = time.perf_counter()
    encoded = encode(image, bpp=bpp, quality=quality, caption=caption or None, max_side=max_side,
                     original_size=original_size)  # fmt: skip
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    decoded = decode(encoded.data, original_size=False)
    decode_seconds = time.perf_counter() - started

    stem = PurePath(filename).stem or "photo"
    height, width = image.shape[:2]
    out = Outcome({})
    out.files["original.png"] = png_bytes(image)
    out.files["stic.png"] = png_bytes(decoded.image)
    out.files[stem + ".stic"] = encoded.data
    panels = [
        _panel("original", "Original", None, width * height, f"{width}x{height}"),
        _panel("stic", "stic", len(encoded.data), width * height,
               f"{encoded.image_model}" + (f", refined by {decoded.refiner}" if decoded.refiner else ""), stem + ".stic"),
    ]  # fmt: skip
    panels += [_classic(key, label, suffix, image, len(encoded.data), stem, out) for key, label, suffix in COMPARED]
    out.report = {
        "name": filename,
        "width": width,
        "height": height,
        "original_size": list(original_size),
        "caption": decoded.caption,
        "image_model": encoded.image_model,
        "refiner": decoded.refiner,
        "encode_seconds": round(encode_seconds, 2),
        "decode_seconds": round(decode_seconds, 2),
        "info": describe(encoded.file),
        "panels": panels,
    }
    return out


def decompress(data: bytes, filename: str) -> Outcome:
    """Decode an uploaded .stic file (refined as the file says, at the size it presents)."""
    from stic.container import unpack
    from stic.errors import FormatError
    from stic.fileinfo import describe
    from stic.pipeline import decode_file

    try:
        file = unpack(data)
    except FormatError as err:
        raise FormatError(f"{filename}: {err}") from err
    started = time.perf_counter()
    decoded = decode_file(file)
    decode_seconds = time.perf_counter() - started
    height, width = decoded.image.shape[:2]
    stem = PurePath(filename).stem or "photo"
    picture = stem + ".decoded.png"
    out = Outcome({}, {picture: png_bytes(decoded.image)})
    out.report = {
        "name": filename,
        "width": width,
        "height": height,
        "caption": decoded.caption,
        "refiner": decoded.refiner,
        "decode_seconds": round(decode_seconds, 2),
        "info": describe(file),
        "panels": [_panel("stic", "stic", len(data), width * height, "decoded", picture, picture)],
    }
    return out
