"""The picture section: grey in, grey out; --max-side shrinks a photo and decoding restores its size."""

import json

import numpy as np
import pytest
from PIL import Image

from stic.cli import main
from stic.container import SECTION_PICTURE, pack, unpack
from stic.errors import FormatError
from stic.image.io import fit_to_side
from stic.picture import Presentation, is_grey
from stic.pipeline import decode, encode


@pytest.fixture(scope="module")
def camera():
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.camera()[100:228, 160:352]  # 192x128 grey photo


def test_section_round_trip_and_skipping():
    for p in (Presentation(grey=True), Presentation(original=(4000, 3000)), Presentation(True, (17, 9))):
        section = p.section()
        assert not section.required and Presentation.from_section(unpack(pack(4, 4, [section])).section(SECTION_PICTURE)) == p
    assert Presentation().section() is None and Presentation.from_section(None) == Presentation()
    bad = Presentation(original=(10**6, 10**6)).section()
    with pytest.raises(FormatError, match="original size"):
        Presentation.from_section(bad)


def test_grey_detection_and_shrinking():
    rgb = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    assert not is_grey(rgb) and is_grey(np.repeat(rgb[..., :1], 3, 2))
    assert fit_to_side(rgb, 25).shape == (15, 25, 3) and fit_to_side(rgb, 50) is rgb


def test_grey_photo_decodes_grey_without_tints(camera):
    rgb = np.repeat(camera[..., None], 3, 2)
    encoded = encode(rgb, quality=1, refiner=None)
    assert encoded.file.section(SECTION_PICTURE) is not None
    decoded = decode(encoded.data)
    assert decoded.image.shape == camera.shape and decoded.presentation.grey
    x_hat = decode(encoded.data, original_size=False).image
    assert x_hat.ndim == 2
    colour = encode(np.stack([camera, camera // 2, camera], 2), quality=1, refiner=None)
    assert colour.file.section(SECTION_PICTURE) is None  # colour files carry no picture section


def test_max_side_codes_a_smaller_picture_and_restores_the_size(camera):
    rgb = np.stack([camera, np.roll(camera, 3, 1), camera // 2], 2)
    small = encode(rgb, quality=1, refiner=None, max_side=96)
    assert (small.file.width, small.file.height) == (96, 64)
    assert len(small.data) < len(encode(rgb, quality=1, refiner=None).data)
    assert decode(small.data).image.shape == rgb.shape
    assert decode(small.data, original_size=False).image.shape == (64, 96, 3)
    unchanged = encode(rgb, quality=1, refiner=None, max_side=500)
    assert unchanged.file.section(SECTION_PICTURE) is None


def test_cli_grey_and_max_side(camera, tmp_path, capsys):
    src = tmp_path / "camera.png"
    Image.fromarray(camera).save(src)
    out = tmp_path / "camera.stic"
    assert main(["encode", str(src), "-o", str(out), "--quality", "1", "--refiner", "none", "--max-side", "64"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "64x43 (shrunk from 192x128), grey" in capsys.readouterr().out
    assert main(["decode", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["grey"] and (report["width"], report["height"]) == (192, 128)
    decoded = Image.open(tmp_path / "camera.decoded.png")
    assert decoded.mode == "L" and decoded.size == (192, 128)
    assert main(["decode", str(out), "-o", str(tmp_path / "small.png"), "--coded-size"]) == 0
    assert Image.open(tmp_path / "small.png").size == (64, 43)


def test_a_photo_above_the_pixel_limit_is_read_shrunk(tmp_path):
    from stic.image import io as image_io

    path = tmp_path / "big.jpg"
    Image.new("RGB", (5000, 4000), (200, 100, 50)).save(path, quality=90)
    with pytest.raises(Exception, match="max-side"):
        image_io.load_image(path)
    small = image_io.load_image(path, max_side=1000)
    assert small.shape == (800, 1000, 3)
