"""Between two rate points, which is better at the same rate: the upper model on the photo shrunk,
or the lower model quantised finer? On 4 Kodak images, each model at several finer steps and sizes,
refined, scored with PSNR, LPIPS-Alex and DISTS (the --bpp order in stic.pipeline follows it).

    python bench/gap_fill_kodak.py      # writes results/gap_fill_kodak.json
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stic.image.io import fit_to_side, load_image
from stic.image.registry import load_image_codec
from stic.metrics import compare
from stic.paths import data_dir
from stic.refine.registry import get_refiner

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("kodim01", "kodim05", "kodim14", "kodim23")
#: (model, finer steps, shrink scales, refiners)
PLAN = (
    ("stic-q1", (0, 4, 8, 12), (), ("realesrgan-compact", "realesrgan-stic")),
    ("stic-q2", (0, 4, 8), (0.9, 0.8, 0.7), ("realesrgan-stic",)),
    ("stic-q3", (0,), (0.8,), ("realesrgan-stic",)),
)


def run(codec, refiner, image: np.ndarray, step: int = 0, scale: float | None = None) -> dict:
    height, width = image.shape[:2]
    coded = fit_to_side(image, round(scale * max(height, width))) if scale else image
    payload = codec.compress(coded, step=step)
    x_hat = codec.decompress(payload, coded.shape[1], coded.shape[0], codec.codec_id_for(step))
    out = refiner.refine(x_hat, None, 0)
    if out.shape[:2] != (height, width):
        out = np.asarray(Image.fromarray(out).resize((width, height), Image.LANCZOS))
    return {"bpp": 8 * len(payload) / (width * height), **compare(image, out, ["psnr", "lpips-alex", "dists"])}


def main() -> None:
    torch.set_num_threads(2)
    refiners = {name: get_refiner(name) for name in ("realesrgan-compact", "realesrgan-stic")}
    rows = []
    for name in IMAGES:
        image = load_image(data_dir() / "kodak" / f"{name}.png")
        for model, steps, scales, refiner_names in PLAN:
            codec = load_image_codec(model)
            for refiner in refiner_names:
                for step in steps:
                    rows.append({"image": name, "model": model, "step": step, "scale": 1.0, "refiner": refiner,
                                 **run(codec, refiners[refiner], image, step)})  # fmt: skip
            for scale in scales:
                rows.append({"image": name, "model": model, "step": 0, "scale": scale, "refiner": "realesrgan-stic",
                             **run(codec, refiners["realesrgan-stic"], image, 0, scale)})  # fmt: skip
            print(rows[-1], flush=True)
    groups = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["step"], row["scale"], row["refiner"])].append(row)
    means = [{"model": m, "step": st, "scale": sc, "refiner": r,
              **{k: round(statistics.mean(x[k] for x in g), 4) for k in ("bpp", "psnr", "lpips-alex", "dists")}}
             for (m, st, sc, r), g in groups.items()]  # fmt: skip
    out = REPO / "results" / "gap_fill_kodak.json"
    out.write_text(json.dumps({"command": "python bench/gap_fill_kodak.py", "images": IMAGES, "means": means,
                               "rows": rows}, indent=1) + "\n")  # fmt: skip
    for line in means:
        print(line)


if __name__ == "__main__":
    main()
