"""The colour map: fitted by the encoder on x̂, carried in 12 bytes, applied by the decoder to x̂
before refining; optional for old decoders and for users who leave it out."""

import warnings

import numpy as np
import pytest

from stic import codecs, pipeline
from stic.colour import PAYLOAD_BYTES, ColourMap, _from_lab, _to_lab
from stic.container import SECTION_COLOUR, Section, pack, unpack
from stic.errors import FormatError


@pytest.fixture(scope="module")
def photo():
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.coffee()[:192, :256])


def _lab_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((_to_lab(a) - _to_lab(b)) ** 2))


def test_a_washed_out_copy_is_brought_back(photo):
    lab = _to_lab(photo)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]  # noqa: N806
    washed = _from_lab(np.dstack([0.8 * L + 12, 0.6 * a + 0.1 * b, 0.6 * b - 0.15 * a + 0.02 * L + 3]))  # cross terms too
    fitted = ColourMap.fit(washed, photo)
    assert fitted is not None
    assert _lab_error(fitted.apply(washed), photo) < 0.05 * _lab_error(washed, photo)
    again = ColourMap.from_section(unpack(pack(8, 8, [fitted.section()])).section(SECTION_COLOUR))
    assert np.array_equal(again.deviation, fitted.deviation) and np.array_equal(again.offset, fitted.offset)
    assert len(fitted.section().payload) == PAYLOAD_BYTES


def test_nothing_to_gain_writes_no_map_and_bands_change_nothing(photo):
    assert ColourMap.fit(photo, photo) is None
    some = ColourMap(np.array([3, -2, 0, 1, 5, 0, 0, -4, 2]), np.array([8, -3, 1]))
    tall = np.concatenate([photo] * 3)  # 576 rows: bands of 256 rows
    assert np.array_equal(some.apply(tall)[230:290], some.apply(tall[230:290]))  # across a band's edge
    assert ColourMap.fit(photo, tall[:192]) is None and ColourMap.fit(tall, tall) is None


def test_bad_or_unknown_sections(photo):
    with pytest.raises(FormatError, match="colour section"):
        ColourMap.from_section(Section(SECTION_COLOUR, codecs.COLOUR_LAB_AFFINE, b"\0" * 11, required=False))
    assert ColourMap.from_section(Section(SECTION_COLOUR, 99, b"whatever", required=False)) is None


def test_the_decoder_applies_the_map_and_a_file_without_it_still_decodes(photo):
    encoded = pipeline.encode(photo, quality=1, refiner=None)
    plain = pipeline.encode(photo, quality=1, refiner=None, colour=False)
    assert encoded.file.section(SECTION_COLOUR) is not None and plain.file.section(SECTION_COLOUR) is None
    assert len(encoded.data) == len(plain.data) + 4 + 3 + PAYLOAD_BYTES  # CRC, header, payload
    corrected, xhat = pipeline.decode(encoded.data).image, pipeline.decode(plain.data).image
    assert _lab_error(corrected, photo) < _lab_error(xhat, photo)
    # what a decoder that predates the section sees: the same file without it gives x̂
    stripped = [s for s in encoded.file.sections if s.kind != SECTION_COLOUR]
    assert np.array_equal(pipeline.decode(pack(encoded.file.width, encoded.file.height, stripped)).image, xhat)


def test_a_rate_target_counts_the_map(photo):
    target = 0.05
    encoded = pipeline.encode(photo, bpp=target, refiner=None)
    assert encoded.file.section(SECTION_COLOUR) is not None
    assert 8 * len(encoded.data) <= target * photo.shape[0] * photo.shape[1]


def test_the_cli_leaves_the_map_out_when_asked(photo, tmp_path):
    from PIL import Image

    from stic.cli import main

    source = tmp_path / "p.png"
    Image.fromarray(photo).save(source)
    for extra, expected in (([], True), (["--no-colour-map"], False)):
        out = tmp_path / "p.stic"
        assert main(["encode", str(source), "-o", str(out), "--force", "--quality", "1", *extra]) == 0
        assert (unpack(out.read_bytes()).section(SECTION_COLOUR) is not None) is expected


def test_a_target_too_low_for_the_map_is_met_without_it(photo, monkeypatch):
    from stic.colour import ColourMap

    bulky = Section(SECTION_COLOUR, codecs.COLOUR_LAB_AFFINE, bytes(5000), required=False)  # never fits
    monkeypatch.setattr(pipeline, "placeholder_section", lambda: bulky)
    monkeypatch.setattr(ColourMap, "section", lambda self: bulky)
    encoded = pipeline.encode(photo, bpp=0.05, refiner=None)
    assert encoded.file.section(SECTION_COLOUR) is None
    assert 8 * len(encoded.data) <= 0.05 * photo.shape[0] * photo.shape[1]


def test_lab_conversions_match_skimage():
    from skimage.color import lab2rgb, rgb2lab

    grid = np.stack(np.meshgrid(*[np.arange(0, 256, 5)] * 3, indexing="ij"), -1).reshape(-1, 1, 3).astype(np.uint8)
    lab = _to_lab(grid)
    assert np.array_equal(lab, rgb2lab(grid / 255.0))
    moved = lab * [1.1, 1.3, 1.3] + [-4, 9, -9]  # out of gamut too: clipped alike
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns of the Z < 0 it clips, as _from_lab clips it
        expected = np.clip(np.rint(lab2rgb(moved) * 255.0), 0, 255).astype(np.uint8)
    assert np.array_equal(_from_lab(moved), expected)
