"""Classic codecs: round trips, the rate control's promise (real file <= target, or a clear
refusal), odd sizes, container vs stream bytes, x265's settings SEI, and missing binaries."""

import struct

import numpy as np
import pytest

from stic.baselines import (
    CLASSIC_CODECS,
    CodecUnavailableError,
    Coded,
    TargetUnreachableError,
    encode_to_bpp,
    get_classic_codec,
)
from stic.baselines.base import ClassicCodec
from stic.baselines.pillow_codecs import mdat_payload_bytes
from stic.errors import InputError


def _picture(height=96, width=128):
    """A smooth synthetic photo stand-in: gradients, a disc and mild noise (deterministic)."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    disc = (
        (x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (height * 0.25) ** 2
    ) * 90
    image = np.stack(
        [
            x * 200 / width + disc,
            y * 200 / height,
            (x + y) * 100 / (width + height) + 60,
        ],
        axis=2,
    )
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def _codec_or_skip(name):
    codec = get_classic_codec(name)
    try:
        codec.check_available()
    except CodecUnavailableError as err:
        pytest.skip(str(err))
    return codec


def _psnr(a, b):
    return 10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2))


@pytest.mark.parametrize("name", list(CLASSIC_CODECS))
def test_rate_control_fits_the_target_and_decodes(name):
    codec, image = _codec_or_skip(name), _picture()
    result = encode_to_bpp(codec, image, 1.0)
    assert result.bpp == 8 * len(result.coded.data) / image[..., 0].size <= 1.0
    assert result.stream_bpp <= result.bpp
    decoded = codec.decode(result.coded.data, 128, 96)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert _psnr(image, decoded) > 25
    # the next setting up would overshoot (the search returns the best that fits)
    index = list(codec.settings).index(result.setting)
    if index + 1 < len(codec.settings):
        assert (
            codec.encode(image, codec.settings[index + 1]).file_bytes
            > 1.0 * image[..., 0].size / 8
        )


@pytest.mark.parametrize("name", ["x265", "vvc", "heic", "avif"])
def test_odd_sizes_are_padded_and_cropped(name):
    codec, image = _codec_or_skip(name), _picture(95, 127)
    decoded = codec.decode(encode_to_bpp(codec, image, 1.5).coded.data, 127, 95)
    assert decoded.shape == (95, 127, 3) and _psnr(image, decoded) > 25


def test_unreachable_target_is_refused_with_the_lowest_rate():
    codec = _codec_or_skip("jpeg")
    with pytest.raises(
        TargetUnreachableError, match=r"jpeg cannot reach 0.01 bpp .* gives \d"
    ) as info:
        encode_to_bpp(codec, _picture(), 0.01)
    assert info.value.lowest_bpp > 0.01
    with pytest.raises(InputError, match="positive"):
        encode_to_bpp(codec, _picture(), 0)


def test_x265_stream_has_no_settings_sei():
    codec = _codec_or_skip("x265")
    data = codec.encode(_picture(), 30).data
    assert b"x265 (build" not in data and b"options:" not in data
    assert data.startswith(b"\x00\x00\x00\x01")  # a raw Annex-B stream, no container


@pytest.mark.parametrize("name", ["avif", "heic"])
def test_container_and_stream_sizes_are_both_reported(name):
    codec = _codec_or_skip(name)
    coded = codec.encode(_picture(), 50)
    assert (
        100 < coded.file_bytes - coded.stream_bytes < 1000
    )  # ISOBMFF boxes around the coded image


def test_mdat_parser_handles_normal_and_large_boxes():
    ftyp = struct.pack(">I4s", 16, b"ftyp") + b"avifmif1"
    mdat = struct.pack(">I4s", 8 + 5, b"mdat") + b"12345"
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 3) + b"abc"
    assert mdat_payload_bytes(ftyp + mdat + large) == 8


class _FakeCodec(ClassicCodec):
    """File size = 100 * setting bytes; counts encodes."""

    name, settings = "fake", tuple(range(1, 51))

    def __init__(self):
        self.calls = 0

    def encode(self, rgb, setting):
        self.calls += 1
        return Coded(bytes(100 * setting), 100 * setting)


def test_rate_search_finds_the_largest_fitting_setting_and_reuses_encodes():
    from stic.baselines import SizeCache

    codec, image = (
        _FakeCodec(),
        np.zeros((10, 80, 3), np.uint8),
    )  # 800 pixels: 1 bpp = 100 bytes
    cache = SizeCache(codec, image)
    for target, expected in [(7.5, 7), (7.99, 7), (8.0, 8), (50, 50), (49.9, 49)]:
        assert encode_to_bpp(codec, image, target, cache).setting == expected
    assert codec.calls <= 20
    with pytest.raises(TargetUnreachableError):
        encode_to_bpp(codec, image, 0.5, cache)


def test_a_byte_budget_is_met_exactly_on_any_picture_size():
    from stic.baselines import encode_within_bytes

    image = np.zeros((750, 1000, 3), np.uint8)  # 8 * n / 750000 bpp comes back a byte short for some n
    for max_bytes in range(100, 5001, 100):
        assert encode_within_bytes(_FakeCodec(), image, max_bytes).coded.file_bytes == max_bytes
    assert encode_within_bytes(_FakeCodec(), image, 799).coded.file_bytes == 700


def test_missing_ffmpeg_is_a_clear_error(monkeypatch):
    from stic.baselines import ffmpeg_codecs

    ffmpeg_codecs.ffmpeg_executable.cache_clear()
    ffmpeg_codecs.ffmpeg_encoders.cache_clear()
    monkeypatch.setenv("STIC_FFMPEG", "/nonexistent/ffmpeg")
    try:
        with pytest.raises(
            CodecUnavailableError,
            match="STIC_FFMPEG=/nonexistent/ffmpeg is not an executable",
        ):
            get_classic_codec("x265").check_available()
    finally:
        ffmpeg_codecs.ffmpeg_executable.cache_clear()
        ffmpeg_codecs.ffmpeg_encoders.cache_clear()


def test_unknown_codec_names_the_choices():
    with pytest.raises(
        InputError, match="unknown classic codec 'bpg'; choose from jpeg, webp"
    ):
        get_classic_codec("bpg")
