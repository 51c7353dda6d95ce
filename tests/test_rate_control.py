"""`bpp=T` uses the rate the ladder leaves unused: the model above the first that fits, on the picture
shrunk to fit, else the one that fits quantised finer, and below the lowest model the lowest one
shrunk; the decoder restores the size."""

import numpy as np
import pytest

from stic import pipeline
from stic.errors import InputError
from stic.fileinfo import describe


@pytest.fixture(scope="module")
def photo():
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.coffee()[:256, :384])


@pytest.fixture(scope="module")
def ladder(photo):
    return {name: pipeline.encode(photo, model=name, refiner=None).bpp for name in ("stic-q1", "stic-q2")}


def test_a_target_just_below_a_model_is_met_with_it_shrunk_a_little(photo, ladder):
    target = 0.95 * ladder["stic-q2"]  # 320 px wide (320x256 padded) gives 0.91 of the full-size bits
    encoded = pipeline.encode(photo, bpp=target, refiner=None)
    assert encoded.image_model == "stic-q2" and round(0.8 * 384) <= encoded.file.width < 384
    assert ladder["stic-q1"] < encoded.bpp <= target
    assert encoded.bpp == 8 * len(encoded.data) / (384 * 256)  # bits per pixel of the original size
    assert pipeline.decode(encoded.data).image.shape == photo.shape


def test_far_between_two_models_the_lower_one_codes_the_whole_picture_finer(photo, ladder):
    """Shrinking the upper model past 0.8 of each side looks worse than the lower model at full
    size; the lower model fills the target with a finer quantisation step."""
    target = 1.3 * ladder["stic-q1"]
    encoded = pipeline.encode(photo, bpp=target, refiner=None)
    assert encoded.image_model == "stic-q1" and encoded.file.width == 384
    assert 0.9 * target <= encoded.bpp <= target
    assert describe(encoded.file)["sections"][0]["step"] > 0


def test_above_the_highest_model_it_codes_finer(photo):
    top = pipeline.encode(photo, model="stic-q3", refiner=None).bpp
    encoded = pipeline.encode(photo, bpp=1.5 * top, refiner=None)
    assert encoded.image_model == "stic-q3" and 0.9 * 1.5 * top <= encoded.bpp <= 1.5 * top
    assert pipeline.decode(encoded.data).image.shape == photo.shape


def test_a_target_below_the_lowest_model_shrinks_the_picture(photo, ladder):
    target = ladder["stic-q1"] / 2
    encoded = pipeline.encode(photo, bpp=target, refiner=None)
    assert encoded.image_model == "stic-q1" and 0.9 * target <= encoded.bpp <= target
    assert encoded.file.width <= 384 * 0.75
    assert pipeline.decode(encoded.data).image.shape == photo.shape


def test_a_target_below_the_smallest_picture_is_refused(photo, ladder):
    with pytest.raises(InputError, match="even shrunk to 0.25"):
        pipeline.encode(photo, bpp=ladder["stic-q1"] / 100, refiner=None)
