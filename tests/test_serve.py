"""`stic serve`'s application through Starlette's test client: what the page uploads and gets back,
bad uploads, and the command's own checks (port, missing extra) before anything loads."""

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from stic.serve.app import create_app  # noqa: E402

CAPTION = "An astronaut in an orange suit."


@pytest.fixture(scope="module")
def photo() -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()[::4, ::4]).save(buffer, format="PNG")  # 128x128
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as client:
        yield client


@pytest.fixture(scope="module")
def compressed(client, photo):
    response = client.post("/api/compress", files={"photo": ("astro.png", photo, "image/png")},
                           data={"quality": "1", "caption": CAPTION})  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def _file(client, report, name) -> bytes:
    response = client.get(f"/results/{report['id']}/{name}")
    assert response.status_code == 200
    return response.content


def test_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="compress-form"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def test_compress_gives_the_cli_file_and_classic_codecs_within_its_size(client, compressed, photo):
    from stic.caption.registry import make_captioner
    from stic.image.io import load_image
    from stic.pipeline import decode, encode

    image = load_image(photo)
    panels = {p["key"]: p for p in compressed["panels"]}
    assert list(panels) == ["original", "stic", "avif", "jpeg"]
    stic_file = _file(client, compressed, "astro.stic")
    # the same bytes as `stic encode astro.png --quality 1 --caption ...`
    caption = make_captioner(text=CAPTION).caption(image, "astro.png").text
    assert stic_file == encode(image, quality=1, caption=caption).data
    assert panels["stic"]["bytes"] == len(stic_file) and compressed["caption"] == CAPTION
    assert panels["stic"]["bpp"] == pytest.approx(8 * len(stic_file) / 128**2)
    decoded = np.asarray(Image.open(io.BytesIO(_file(client, compressed, "stic.png"))))
    assert np.array_equal(decoded, decode(stic_file).image)
    for key, suffix in (("avif", ".avif"), ("jpeg", ".jpg")):
        coded = _file(client, compressed, "astro" + suffix)
        assert panels[key]["bytes"] == len(coded)
        # at most stic's size, or the codec's smallest file, said so
        assert len(coded) <= len(stic_file) or "cannot go this small" in panels[key]["note"]
        assert Image.open(io.BytesIO(_file(client, compressed, f"{key}.png"))).size == (128, 128)
    assert [s["kind"] for s in compressed["info"]["sections"]][:2] == ["image", "caption"]


def test_download_names_the_file(client, compressed):
    response = client.get(f"/results/{compressed['id']}/astro.stic?download=1")
    assert response.headers["content-disposition"] == 'attachment; filename="astro.stic"'
    assert client.get(f"/results/{compressed['id']}/nothing.png").status_code == 404
    assert client.get("/results/unknown/astro.stic").status_code == 404


def test_decompress_a_stic_file(client, compressed):
    stic_file = _file(client, compressed, "astro.stic")
    response = client.post("/api/decompress", files={"file": ("astro.stic", stic_file)})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["caption"] == CAPTION and (report["width"], report["height"]) == (128, 128)
    served = _file(client, report, report["panels"][0]["image"])
    assert served == _file(client, compressed, "stic.png")


@pytest.mark.parametrize(
    "route, field, name, data, form, message",
    [
        ("compress", "photo", "notes.txt", b"not a picture", {}, "notes.txt is not an image file stic can read"),
        ("compress", "photo", "empty.png", b"", {}, "empty.png is empty"),
        ("compress", "photo", "a.png", None, {"bpp": "abc"}, "the target bpp must be a number, not 'abc'"),
        ("compress", "photo", "a.png", None, {"bpp": "0.03", "quality": "1"}, "not both"),
        ("compress", "photo", "a.png", None, {"quality": "9"}, "quality must be 1..3"),
        ("compress", "photo", "a.png", None, {"max_side": "4"}, "the max side must be at least 16"),
        ("decompress", "file", "photo.png", None, {}, "photo.png: not a .stic file"),
        ("decompress", "file", "cut.stic", "truncated", {}, "cut.stic: "),
    ],
)
def test_bad_uploads_get_one_clear_message(client, photo, compressed, route, field, name, data, form, message):
    if data is None:
        data = photo
    elif data == "truncated":
        data = _file(client, compressed, "astro.stic")[:-5]
    response = client.post(f"/api/{route}", files={field: (name, data)}, data=form)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_missing_and_oversized_uploads(client, monkeypatch):
    assert client.post("/api/compress").json()["error"] == "no photo in the upload"
    monkeypatch.setattr("stic.serve.app.MAX_UPLOAD_BYTES", 10)
    response = client.post("/api/decompress", files={"file": ("big.stic", b"x" * 100)})
    assert response.status_code == 413 and "upload too large" in response.json()["error"]


def test_upload_names_are_made_plain(client):
    response = client.post("/api/compress", files={"photo": ("../my photo (1);.txt", b"nope")})
    assert response.json()["error"] == "my_photo_1_.txt is not an image file stic can read"


def test_serve_refuses_a_taken_port_and_a_bad_one_before_loading_anything(capsys):
    import socket

    from stic.cli import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 1
    finally:
        taken.close()
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--port", "70000"])
    assert exit_.value.code == 1 and "not a port number" in capsys.readouterr().err


def test_serve_names_the_missing_extra(monkeypatch, capsys):
    import importlib.util

    from stic.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert main(["serve", "--port", "0"]) == 1
    assert "stic serve needs uvicorn: pip install 'stic[serve]'" in capsys.readouterr().err
