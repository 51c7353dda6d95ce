"""`stic serve` as a person uses it: the real command, in headless Chromium (Debian's, driven by
Playwright through its executable path): upload, the result appears, the download works and
decodes, a dropped .stic file decodes, bad files show their error."""

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
CHROMIUM = os.environ.get("STIC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)", allow_module_level=True)

CAPTION = "An astronaut in an orange suit."
RESULT_TIMEOUT_MS = 180_000  # the first photo also loads the models


@pytest.fixture(scope="module")
def server():
    """`stic serve --port 0` in its own process; its first line names the URL."""
    process = subprocess.Popen([sys.executable, "-m", "stic.cli", "serve", "--port", "0"],
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    try:
        line = process.stderr.readline()
        assert line.startswith("stic: serving http://127.0.0.1:"), line
        yield line.split()[2]
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True)
        page.goto(server)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()[::4, ::4]).save(path)  # 128x128
    return path


def _result_title(page):
    title = page.locator("#result-title")
    sync_api.expect(title).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    return title


def test_upload_result_download_and_decode(page, photo, tmp_path):
    from stic.pipeline import decode

    page.set_input_files("#photo", str(photo))
    page.check("input[name=rate][value=quality]")
    page.select_option("#quality", "1")
    page.fill("#caption", CAPTION)
    page.click("#compress")
    sync_api.expect(_result_title(page)).to_contain_text("astronaut.png: 128×128, stic file")
    sync_api.expect(page.locator("#result-caption")).to_have_text(f"Caption: {CAPTION}")
    assert page.locator("#panels figure").evaluate_all("fs => fs.map(f => f.dataset.key)") == ["original", "stic", "avif", "jpeg"]
    page.wait_for_function("() => [...document.querySelectorAll('#panels img')].every(i => i.complete && i.naturalWidth === 128)")
    assert page.locator("#left-img").get_attribute("alt") == "Original" and page.locator("#right-img").get_attribute("alt") == "stic"
    page.fill("#split", "20")
    assert "80%" in page.locator("#left-img").evaluate("i => i.style.clipPath")

    with page.expect_download() as download:
        page.click("a.download-stic")
    saved = tmp_path / "astronaut.stic"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "astronaut.stic"
    assert decode(saved.read_bytes()).caption == CAPTION

    # drop the downloaded file on the decode form, as a person drags it from their files
    payload = base64.b64encode(saved.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """(b64) => { const t = new DataTransfer();
            t.items.add(new File([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], "astronaut.stic"));
            return t; }""",
        payload,
    )
    page.dispatch_event("#decompress-form", "drop", {"dataTransfer": transfer})
    page.click("#decompress")
    sync_api.expect(page.locator("#result-title")).to_contain_text("astronaut.stic: 128×128", timeout=RESULT_TIMEOUT_MS)
    sync_api.expect(page.locator("#result-caption")).to_have_text(f"Caption: {CAPTION}")
    sync_api.expect(page.locator("#error")).to_be_hidden()


def test_bad_files_show_their_error(page, photo, tmp_path):
    not_a_photo = tmp_path / "notes.txt"
    not_a_photo.write_text("hello")
    page.set_input_files("#photo", str(not_a_photo))
    page.click("#compress")
    error = page.locator("#error")
    sync_api.expect(error).to_have_text("notes.txt is not an image file stic can read", timeout=RESULT_TIMEOUT_MS)
    sync_api.expect(page.locator("#result")).to_be_hidden()

    page.set_input_files("#stic-file", str(photo))
    page.click("#decompress")
    sync_api.expect(error).to_have_text("astronaut.png: not a .stic file (bad magic bytes)", timeout=RESULT_TIMEOUT_MS)
