"""Write tests/fixtures/*.stic and golden.json: files every CI run must keep decoding.

Run only when a format or numerics change is deliberate (with a new codec id or stream
version): files already listed are kept as they are, so files from older stic versions stay.

    python scripts/make_golden_fixtures.py
"""

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT / "tests"))

import fuzz_cases as fc  # noqa: E402  (the tests' sample picture)
from child_helpers import symbols_digest  # noqa: E402

from stic import pipeline  # noqa: E402
from stic.codecs import IMAGE_LEARNED  # noqa: E402
from stic.container import SECTION_IMAGE, unpack  # noqa: E402
from stic.image.registry import all_shipped_models  # noqa: E402
from stic.refine.degrid import FLOAT_MEDIAN  # noqa: E402
from stic.refine.esrgan import RealESRGANRefiner  # noqa: E402

CAPTIONS = {
    "caption_lm_tuned.stic": (" The image features a red barn with a white roof, surrounded by a lush green "
                              "field under a clear blue sky.", "lm"),
    "caption_lm_unicode.stic": ("Zwölf Boxkämpfer jagen Viktor 🚲 — 42 times.", "lm"),
    "caption_zlib.stic": (" A small boat on a calm lake at sunset.", "zlib"),
}


def caption_file(text: str, coder_name: str) -> bytes:
    """A caption-only file, as `stic text encode` writes it."""
    from stic.container import SECTION_CAPTION, Section, write_file
    from stic.text.registry import get_text_coder

    coder = get_text_coder(coder_name)
    path = FIXTURES / ".caption.partial"
    write_file(path, 0, 0, [Section(SECTION_CAPTION, coder.codec_id, coder.encode(text), coder.fingerprint())])
    data = path.read_bytes()
    path.unlink()
    return data


def entry(data: bytes, caption_only: bool, caption: str | None = None) -> dict:
    if caption_only:
        return {"caption": caption}
    decoded = pipeline.decode(data)
    held = {"caption": decoded.caption, "pixels_sha256": hashlib.sha256(decoded.image.tobytes()).hexdigest()}
    if unpack(data).section(SECTION_IMAGE).codec_id != IMAGE_LEARNED:  # exact entropy parameters
        held["latents_sha256"] = symbols_digest(data)
    return held


def main() -> None:
    golden_path = FIXTURES / "golden.json"
    golden = json.loads(golden_path.read_text(encoding="utf-8")) if golden_path.is_file() else {}
    image = fc.sample_image(96, 128, 3)
    makers = {name: (lambda t=text, c=coder: caption_file(t, c)) for name, (text, coder) in CAPTIONS.items()}
    for model in all_shipped_models():
        makers[f"image_{model}.stic"] = lambda m=model: pipeline.encode(image, model=m, refiner="none").data
    makers["image_caption_refine_stic-q2.stic"] = lambda: pipeline.encode(
        image, model="stic-q2", caption="A gradient test card.", refiner="realesrgan-compact"
    ).data
    # image codec 3 (stic 0.3): latents quantised finer
    makers["image_step12_stic-q2.stic"] = lambda: pipeline.encode(image, model="stic-q2", refiner="none", step=12).data
    # the colour section (stic 0.4): a map of x̂ in CIELAB
    makers["image_colour_stic-q1.stic"] = lambda: pipeline.encode(image, model="stic-q1", refiner="none").data
    # stic-q1's defaults in stic 0.4.0: colour map, realesrgan-stic with its grid filter (parameter byte 1)
    makers["image_colour_refine-stic_stic-q1.stic"] = lambda: pipeline.encode(
        image, model="stic-q1", refiner=RealESRGANRefiner("realesrgan-stic", degrid=FLOAT_MEDIAN)
    ).data
    # stic 0.5: the grid filter's quarter-level median (parameter byte 2), stic-q1's default since stic 0.5
    makers["image_colour_refine-stic_stic-q1_stic0.5.stic"] = lambda: pipeline.encode(image, model="stic-q1").data
    # stic 0.5: stic-q2's defaults, its own refiner realesrgan-stic-q2 (refiner id 5) with the grid filter
    makers["image_colour_refine-stic-q2_stic-q2.stic"] = lambda: pipeline.encode(image, model="stic-q2").data
    for name, make in makers.items():
        if name in golden:
            continue  # never rewrite a golden file
        data = make()
        (FIXTURES / name).write_bytes(data)
        golden[name] = entry(data, name in CAPTIONS, CAPTIONS.get(name, (None,))[0])
        print(name, len(data), golden[name])
    golden_path.write_text(json.dumps(golden, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
