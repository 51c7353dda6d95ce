"""The dot-grid filter, both versions: a pattern locked to the 4-pixel output grid goes, texture that
is not stays; realesrgan-stic's new files ask for the quarter-level median, older files (no byte, or
stic 0.4.0's float median) decode as they did."""

import subprocess
import sys

import numpy as np
import pytest

from stic.errors import FormatError
from stic.refine import degrid
from stic.refine.degrid import FLOAT_MEDIAN, PERIOD, QUARTER_LEVEL_MEDIAN, VERSIONS, remove_grid
from stic.refine.esrgan import RealESRGANRefiner
from stic.refine.registry import refine_section, refiner_for_section


def _smooth(h=96, w=128) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([60 + x, 80 + y / 2, 120 + (x + y) / 4], -1).astype(np.float64)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_pattern_locked_to_the_grid_is_removed(version):
    dots = np.zeros((PERIOD, PERIOD, 3))
    dots[1, 2], dots[3, 0] = 12, -12
    smooth = _smooth()
    dotted = np.clip(np.rint(smooth + np.tile(dots, (96 // PERIOD, 128 // PERIOD, 1))), 0, 255).astype(np.uint8)
    cleaned = remove_grid(dotted, version).astype(np.float64)
    inner = (slice(8, -8), slice(8, -8))
    before, after = (np.abs(image[inner] - smooth[inner]).mean() for image in (dotted, cleaned))
    assert before > 1.5 and after < 0.2 * before


@pytest.mark.parametrize("version", VERSIONS)
def test_an_edge_gets_no_ripple(version):
    step = np.full((64, 64, 3), 50, np.uint8)
    step[:, 30:] = 200
    assert np.array_equal(remove_grid(step, version), step)
    lines = step.copy()
    lines[:, 36:38], lines[:, 44:46] = 0, 255  # three edges within 16 pixels
    assert np.abs(remove_grid(lines, version).astype(int) - lines).max() <= 2


@pytest.mark.parametrize("version", VERSIONS)
def test_texture_off_the_grid_stays(version):
    y, x = np.mgrid[0:96, 0:128]
    stripes = _smooth() + 20 * np.sin(2 * np.pi * (x + 0.7 * y) / 7.3)[..., None]  # not periodic in 4 px
    image = np.clip(np.rint(stripes), 0, 255).astype(np.uint8)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(remove_grid(image, version)[inner].astype(float) - image[inner]).mean() < 2


def test_the_quarter_level_median_is_the_float_median_rounded_and_clipped():
    rng = np.random.default_rng(1)
    plane = (rng.standard_normal((40, 56, 3)) * 20).astype(np.float32)  # some medians beyond +-32
    plane[:20] *= 4
    expected = np.clip(np.rint(degrid._float_median(plane) * 4), -128, 127) / 4
    assert np.array_equal(degrid._quarter_level_median(plane), expected)
    assert (expected == 127 / 4).any() and (expected == -32).any()  # both clips reached


def test_realesrgan_stic_files_ask_for_it_and_old_sections_decode_as_they_did():
    refiner = RealESRGANRefiner("realesrgan-stic")
    assert refiner.degrid == QUARTER_LEVEL_MEDIAN and refiner.params() == b"\x02"
    assert not RealESRGANRefiner("realesrgan-compact").degrid
    rebuilt, _ = refiner_for_section(refine_section(refiner, seed=0))
    assert rebuilt.degrid == QUARTER_LEVEL_MEDIAN
    stic040 = refine_section(RealESRGANRefiner("realesrgan-stic", degrid=FLOAT_MEDIAN), seed=0)
    assert stic040.payload == b"\x00\x01" and refiner_for_section(stic040)[0].degrid == FLOAT_MEDIAN
    old = refine_section(RealESRGANRefiner("realesrgan-stic", degrid=0), seed=0)  # what stic 0.3 wrote
    assert old.payload == b"\x00" and not refiner_for_section(old)[0].degrid
    image = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    assert not np.array_equal(rebuilt.refine(image), refiner_for_section(old)[0].refine(image))


@pytest.mark.parametrize("bad", [True, 3, -1])
def test_a_grid_filter_version_nobody_reads_is_refused(bad):
    with pytest.raises(ValueError, match="grid filter version"):
        RealESRGANRefiner("realesrgan-stic", degrid=bad)


@pytest.mark.parametrize("version", VERSIONS)
def test_images_smaller_than_the_grid(version):
    for shape in ((3, 3, 3), (1, 9, 3), (6, 2, 3)):
        image = (np.random.default_rng(2).random(shape) * 255).astype(np.uint8)
        assert remove_grid(image, version).shape == shape


def test_unknown_parameters_are_refused_in_one_line():
    section = refine_section(RealESRGANRefiner("realesrgan-stic"), seed=0)
    forged = type(section)(section.kind, section.codec_id, section.payload[:1] + b"\x07", section.fingerprint, False)
    with pytest.raises(FormatError, match="newer stic"):
        refiner_for_section(forged)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_same_pixels_on_any_number_of_threads(version):
    image = (np.random.default_rng(3).random((96, 128, 3)) * 255).astype(np.uint8)
    results = [remove_grid(image, version, workers) for workers in (1, 3, 16)]
    assert all(np.array_equal(results[0], other) for other in results[1:])
    assert np.array_equal(remove_grid(image, version), results[0])  # torch's thread count by default
    assert not np.array_equal(results[0], image)


def test_a_decoder_imports_the_filter_beside_the_image():
    """A fresh process that rebuilds the refiner from a file's section starts importing the
    filter's SciPy/skimage modules at once, on a thread of their own (~0.4 s off a cold decode)."""
    script = (
        "import sys\n"
        "from stic.refine import degrid\n"
        "from stic.refine.esrgan import RealESRGANRefiner\n"
        "assert 'skimage.filters.rank' not in sys.modules and degrid._importing is None\n"
        "RealESRGANRefiner.from_params('realesrgan-stic', b'\\x02')\n"
        "assert degrid._importing.name == 'stic-grid-filter-import'\n"
        "degrid._importing.join()\n"
        "assert {'scipy.ndimage', 'skimage.filters.rank'} <= set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
