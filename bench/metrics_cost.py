"""Cost of the perceptual metrics on one 768x512 pair (Kodak kodim01 vs a JPEG of it), forward and
forward+backward (the metric as a training loss), at 1 and 2 torch threads.

    python bench/metrics_cost.py [--threads 1,2] [--metrics lpips-alex,...]  ->  results/metrics_cost.json

Each measured entry is written as soon as it is done (a re-run replaces the entries it measures).

Wall-clock and CPU (process) seconds are both recorded, with the machine's load average: on
shared cores wall time moves with the load, CPU time much less.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stic.image.io import load_image
from stic.metrics import create_metric, to_tensor
from stic.paths import data_dir

METRICS = ["psnr", "msssim", "lpips-alex", "lpips-vgg", "dists"]
REPEATS = 3


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    reference = load_image(data_dir() / "kodak" / "kodim01.png")
    buffer = io.BytesIO()
    Image.fromarray(reference).save(buffer, "JPEG", quality=10)
    distorted = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return to_tensor(reference), to_tensor(distorted)


def _median_seconds(step) -> tuple[float, float]:
    """Median wall-clock and CPU (process) seconds of a step."""
    step()  # warm-up
    wall, cpu = [], []
    for _ in range(REPEATS):
        started, started_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--metrics", default=",".join(METRICS))
    args = parser.parse_args()
    out = Path(__file__).resolve().parents[1] / "results" / "metrics_cost.json"
    out.parent.mkdir(exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {"timings": {}}
    results.update(
        {
            "pair": "kodim01 vs JPEG q10, 768x512",
            "repeats": REPEATS,
            "statistic": "median of the repeats after one warm-up; wall-clock and CPU (process) seconds",
            "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        }
    )
    x, y = _pair()
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for name in args.metrics.split(","):
            metric = create_metric(name)
            load_before = os.getloadavg()[0]

            def forward(metric=metric):
                with torch.no_grad():
                    metric(x, y)

            def forward_backward(metric=metric):
                estimate = y.clone().requires_grad_(True)
                metric(estimate, x).sum().backward()

            (fw, fw_cpu), (fb, fb_cpu) = (
                _median_seconds(forward),
                _median_seconds(forward_backward),
            )
            results["timings"][f"{name}@{threads}thread"] = {
                "forward_s": fw,
                "forward_cpu_s": fw_cpu,
                "forward_backward_s": fb,
                "forward_backward_cpu_s": fb_cpu,
                "load_average_1min": [load_before, os.getloadavg()[0]],
            }
            out.write_text(json.dumps(results, indent=2) + "\n")
            print(
                f"{name:11s} threads={threads}: forward {fw:.3f} s (cpu {fw_cpu:.3f}), "
                f"forward+backward {fb:.3f} s (cpu {fb_cpu:.3f}) -> {out}",
                flush=True,
            )


if __name__ == "__main__":
    main()
