"""The grid filter's two versions side by side on Kodak (stic.refine.degrid): the float median
(byte 1, stic 0.4.0) and the quarter-level median (byte 2, stic 0.5): how many refined pixels
differ and by how much, LPIPS-Alex and DISTS of each, and each filter's time on 1 and 2 threads
(best of 3) on realesrgan-stic's output for 768x512 x̂ from stic-q1 and stic-q2.

    python bench/grid_filter_versions.py [--images kodim01 kodim04 ...]   # results/grid_filter_versions.json
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from stic.image.io import load_image
from stic.metrics import compare
from stic.paths import data_dir
from stic.pipeline import decode, encode
from stic.refine.degrid import FLOAT_MEDIAN, QUARTER_LEVEL_MEDIAN, remove_grid
from stic.refine.esrgan import RealESRGANRefiner

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = {"float_median": FLOAT_MEDIAN, "quarter_level_median": QUARTER_LEVEL_MEDIAN}


def best_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(min(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim04", "kodim07", "kodim14", "kodim19", "kodim23"])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "grid_filter_versions.json")
    args = parser.parse_args()
    network = RealESRGANRefiner("realesrgan-stic", degrid=0)
    report = {"load_average_start": [round(x, 2) for x in os.getloadavg()], "rows": []}
    for quality in (1, 2):
        for name in args.images:
            image = load_image(data_dir() / "kodak" / f"{name}.png")
            xhat = decode(encode(image, quality=quality).data, refine=False).image
            raw = network.refine(xhat)  # the network's output, before any filter
            outputs, row = {}, {"quality": quality, "image": name}
            for label, version in VERSIONS.items():
                outputs[label] = remove_grid(raw, version)
                for threads in (1, 2):
                    row[f"{label}_s_{threads}_threads"] = best_time(lambda v=version, t=threads: remove_grid(raw, v, t))
                for metric, value in compare(image, outputs[label], ("lpips-alex", "dists")).items():
                    row[f"{label}_{metric}"] = round(value, 4)
            diff = np.abs(outputs["float_median"].astype(int) - outputs["quarter_level_median"].astype(int))
            row |= {"max_level_difference": int(diff.max()), "share_differing": round(float((diff > 0).mean()), 4),
                    "share_differing_by_more_than_1": round(float((diff > 1).mean()), 6)}
            report["rows"].append(row)
            print(row, flush=True)
    rows = report["rows"]
    report["mean"] = {k: round(statistics.mean(r[k] for r in rows), 4) for k in rows[0] if k not in ("quality", "image")}
    report["mean"]["max_level_difference"] = max(r["max_level_difference"] for r in rows)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["mean"], indent=1))


if __name__ == "__main__":
    main()
