"""How long `stic decode` takes on Kodak with the default settings (MSE model, LM-coded caption,
colour map, the model's default refiner): a cold `stic decode` process (imports and model loads included) and
a warm in-process decode (models already loaded), refined and x̂ only; beside them the caption's decode
alone and a refined decode that decodes the caption after the image instead of beside it.

    python bench/decode_time.py [--images kodim01 kodim02 kodim03] [--quality 2]

Writes results/decode_time.json. Run it on a quiet machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the stic command sets it

from stic import pipeline
from stic.caption.fixed import PrecomputedCaptioner
from stic.container import SECTION_CAPTION, unpack
from stic.image.io import load_image
from stic.paths import data_dir
from stic.pipeline import AUTO, decode, default_refiner, encode
from stic.text.registry import text_coder_for_section

REPO = Path(__file__).resolve().parents[1]


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim02", "kodim03"])
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "decode_time.json")
    args = parser.parse_args()

    captioner = PrecomputedCaptioner(data_dir() / "captions" / "kodak_llava15.csv")
    rows, loads = [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.images:
            image = load_image(data_dir() / "kodak" / f"{name}.png")
            caption = captioner.caption(image, name).text  # fitted to CLIP's window, as `stic encode` does
            encoded = encode(image, quality=args.quality, caption=caption, refiner=AUTO)
            path = Path(tmp) / f"{name}.stic"
            path.write_bytes(encoded.data)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "stic.cli", "decode", str(path), "-o", str(Path(tmp) / f"{name}.png")],
                           check=True, capture_output=True)  # fmt: skip
            cold = time.perf_counter() - started
            decode(encoded.data)  # loads and caches every model the file names
            refined = _timed(lambda: decode(encoded.data))
            xhat = _timed(lambda: decode(encoded.data, refine=False))
            section = unpack(encoded.data).section(SECTION_CAPTION)
            coder = text_coder_for_section(section.codec_id, section.fingerprint)
            caption_alone = _timed(lambda: coder.decode(section.payload))
            beside = pipeline._beside_the_image
            pipeline._beside_the_image = lambda coder: False  # the caption after the image, as stic <= 0.4.0 did
            try:
                sequential = _timed(lambda: decode(encoded.data))
            finally:
                pipeline._beside_the_image = beside
            rows.append({"image": name, "size": f"{image.shape[1]}x{image.shape[0]}", "model": encoded.image_model,
                         "refiner": default_refiner(encoded.image_model), "bytes": len(encoded.data), "cold_cli_decode_s": round(cold, 2),
                         "warm_refined_wall_s": round(refined[0], 2), "warm_refined_cpu_s": round(refined[1], 2),
                         "warm_xhat_wall_s": round(xhat[0], 2), "warm_xhat_cpu_s": round(xhat[1], 2),
                         "warm_caption_alone_wall_s": round(caption_alone[0], 2),
                         "warm_refined_caption_after_image_wall_s": round(sequential[0], 2)})  # fmt: skip
            loads.append(os.getloadavg()[0])
            print(rows[-1])
    means = {key: round(statistics.mean(r[key] for r in rows), 2) for key in rows[0] if key.endswith("_s")}
    result = {"command": "python bench/decode_time.py " + " ".join(sys.argv[1:]), "refiner": "each model's default",
              "cpu_count": os.cpu_count(), "load_average_1min": [round(x, 2) for x in loads], "means": means, "images": rows}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(means))


if __name__ == "__main__":
    main()
