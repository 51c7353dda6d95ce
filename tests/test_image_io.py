import io

import numpy as np
import pytest
from PIL import Image

from stic.errors import InputError
from stic.image import io as image_io


def _save(tmp_path, image, name, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def _rgb(h=6, w=5):
    return np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff", "bmp"])
def test_formats_load_as_rgb(tmp_path, fmt):
    rgb = _rgb()
    path = _save(tmp_path, Image.fromarray(rgb), f"x.{fmt}", **({"lossless": True} if fmt == "webp" else {}))
    out = image_io.load_image(path)
    assert out.shape == (6, 5, 3) and out.dtype == np.uint8
    if fmt in {"png", "tiff", "bmp", "webp"}:
        assert np.array_equal(out, rgb)


def test_greyscale_palette_cmyk_and_16bit(tmp_path):
    grey = np.arange(30, dtype=np.uint8).reshape(6, 5)
    out = image_io.load_image(_save(tmp_path, Image.fromarray(grey), "g.png"))
    assert np.array_equal(out[:, :, 0], grey) and np.array_equal(out[:, :, 2], grey)
    pal = Image.fromarray(_rgb()).convert("P")
    assert image_io.load_image(_save(tmp_path, pal, "p.png")).shape == (6, 5, 3)
    cmyk = Image.fromarray(_rgb()).convert("CMYK")
    assert image_io.load_image(_save(tmp_path, cmyk, "c.jpg")).shape == (6, 5, 3)
    deep = Image.fromarray((np.arange(30, dtype=np.uint16).reshape(6, 5) * 2000))
    out = image_io.load_image(_save(tmp_path, deep, "d.png"))
    assert out[0, 1, 0] == round(2000 * 255 / 65535) and out[5, 4, 0] == round(58000 * 255 / 65535)


def test_alpha_dropped_with_warning(tmp_path):
    rgba = np.dstack([_rgb(), np.full((6, 5), 7, np.uint8)])
    path = _save(tmp_path, Image.fromarray(rgba), "a.png")
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        out = image_io.load_image(path)
    assert np.array_equal(out, rgba[:, :, :3])


def test_exif_orientation_applied(tmp_path):
    rgb = _rgb(4, 8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = _save(tmp_path, Image.fromarray(rgb), "r.jpg", exif=exif, quality=100)
    assert image_io.load_image(path).shape == (8, 4, 3)


def test_one_pixel(tmp_path):
    out = image_io.load_image(_save(tmp_path, Image.new("RGB", (1, 1), (9, 8, 7)), "one.png"))
    assert out.tolist() == [[[9, 8, 7]]]


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(InputError, match="no such image file"):
        image_io.load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("hello, not a picture")
    with pytest.raises(InputError, match="not an image file"):
        image_io.load_image(tmp_path / "text.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="not an image file"):
        image_io.load_image(tmp_path / "empty.png")
    buffer = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buffer, format="PNG")
    with pytest.raises(InputError, match="truncated or corrupt"):
        image_io.load_image(buffer.getvalue()[:-200])
    with pytest.raises(InputError, match="truncated or corrupt"):
        image_io.load_image(buffer.getvalue()[:20])  # cut inside the header: Image.open itself fails


def test_pixel_limit_checked_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_PIXELS", 100)
    path = _save(tmp_path, Image.new("RGB", (11, 10)), "big.png")
    with pytest.raises(InputError, match="at most 100 pixels"):
        image_io.load_image(path)


def test_save_png_round_trip_and_missing_folder(tmp_path):
    rgb = _rgb()
    image_io.save_png(tmp_path / "o.png", rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), rgb)
    with pytest.raises(InputError, match="does not exist"):
        image_io.save_png(tmp_path / "nope" / "o.png", rgb)
