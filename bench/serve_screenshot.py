"""The README's screenshot of `stic serve`: the astronaut photo (public domain, shipped with
scikit-image) at --bpp 0.03 with its caption, in headless Chromium.

    python bench/serve_screenshot.py [--out docs/serve.webp] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright
from skimage import data

CAPTION = ("An astronaut in an orange spacesuit poses in front of an American flag, holding a white helmet, "
           "with a model of the space shuttle behind her.")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/serve.webp", help="a .webp (small, for the repository) or .png")
    parser.add_argument("--chromium", default=shutil.which("chromium"))
    args = parser.parse_args()
    photo = Path(tempfile.mkdtemp()) / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    server = subprocess.Popen([sys.executable, "-m", "stic.cli", "serve", "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        url = server.stderr.readline().split()[2]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.set_input_files("#photo", str(photo))
            page.fill("#caption", CAPTION)
            page.click("#compress")
            expect(page.locator("#result")).to_be_visible(timeout=300_000)
            page.wait_for_function("() => [...document.querySelectorAll('#panels img')].every(i => i.complete)")
            shot = photo.with_name("page.png")
            page.screenshot(path=shot, full_page=True)
            Image.open(shot).save(args.out, quality=85)
            print(f"{args.out}: {page.inner_text('#result-title')}")
            browser.close()
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
