"""Where `--bpp T` lands on Kodak for targets across 0.003-0.1 bpp: achieved / T, the model and the
coded size chosen, with the default refiner and no caption (the caption's bits would only shift T).

    python bench/rate_control_kodak.py --images 6      # writes results/rate_control_kodak.json
    python bench/rate_control_kodak.py --images 24 --no-colour-map --out results/rate_control_kodak_no_colour_map.json

A target is met when the real file is within [0.9 T, T] (stic.pipeline.TARGET_FLOOR). `step` is the
finer quantisation step the file was coded with (0: the model's own).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from stic import pipeline
from stic.errors import InputError
from stic.fileinfo import describe
from stic.image.io import load_image
from stic.metrics import compare
from stic.paths import data_dir

REPO = Path(__file__).resolve().parents[1]
METRICS = ("psnr", "lpips-alex", "dists", "ciede2000")
TARGETS = (0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="the first N Kodak images")
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS))
    parser.add_argument("--out", type=Path, default=REPO / "results" / "rate_control_kodak.json")
    parser.add_argument("--no-colour-map", action="store_true", help="files without the colour map (stic.colour)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    names = [f"kodim{i:02d}" for i in range(1, args.images + 1)]
    rows = []
    load = [os.getloadavg()[0]]
    for name in names:
        image = load_image(data_dir() / "kodak" / f"{name}.png")
        for target in args.targets:
            started = time.perf_counter()
            try:
                encoded = pipeline.encode(image, bpp=target, colour=not args.no_colour_map)
            except InputError as err:
                rows.append({"image": name, "target": target, "met": False, "note": str(err)[:120]})
                continue
            seconds = time.perf_counter() - started
            decoded = pipeline.decode(encoded.data).image
            rows.append({
                "image": name, "target": target, "bpp": round(encoded.bpp, 5), "ratio": round(encoded.bpp / target, 3),
                "met": 0.9 * target <= encoded.bpp <= target, "model": encoded.image_model,
                "step": describe(encoded.file)["sections"][0].get("step", 0),
                "coded": [encoded.file.width, encoded.file.height], "encode_s": round(seconds, 2),
                **{k: round(v, 4) for k, v in compare(image, decoded, METRICS).items()},
            })
            print(json.dumps(rows[-1]))
        load.append(os.getloadavg()[0])
    summary = []
    for target in args.targets:
        group = [r for r in rows if r["target"] == target]
        done = [r for r in group if "bpp" in r]
        summary.append({
            "target": target, "met": sum(r["met"] for r in group), "images": len(group),
            "mean_ratio": round(statistics.mean(r["ratio"] for r in done), 3) if done else None,
            **{f"mean_{m}": round(statistics.mean(r[m] for r in done), 4) if done else None for m in METRICS},
            "models": sorted({r["model"] for r in done}),
        })
    command = f"python bench/rate_control_kodak.py --images {args.images}" + (" --no-colour-map" if args.no_colour_map else "")
    report = {"command": command,
              "load_average_1min": [round(min(load), 1), round(max(load), 1)], "summary": summary, "rows": rows}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
