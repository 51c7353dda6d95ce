"""Cost of the perceptual metrics on one 768x512 pair (Kodak kodim01 vs a JPEG of it), forward and
forward+backward (the metric as a training loss), at 1 and 2 torch threads.

    python bench/metrics_cost.py   ->  results/metrics_cost.json

Wall-clock and CPU (process) seconds are both recorded, with the machine's load average: on
shared cores wall time moves with the load, CPU time much less.
"""

from __future__ import annotations

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
    x, y = _pair()
    results = {"pair": "kodim01 vs JPEG q10, 768x512", "repeats": REPEATS, "statistic": "median seconds",
               "load_average_before": os.getloadavg(), "cpu_count": os.cpu_count(),
               "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "timings": {}}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name in METRICS:
            metric = create_metric(name)

            def forward():
                with torch.no_grad():
                    metric(x, y)

            def forward_backward():
                estimate = y.clone().requires_grad_(True)
                metric(estimate, x).sum().backward()

            (fw, fw_cpu), (fb, fb_cpu) = _median_seconds(forward), _median_seconds(forward_backward)
            entry = {"forward_s": fw, "forward_cpu_s": fw_cpu, "forward_backward_s": fb, "forward_backward_cpu_s": fb_cpu}
            results["timings"][f"{name}@{threads}thread"] = entry
            print(f"{name:11s} threads={threads}: forward {fw:.3f} s (cpu {fw_cpu:.3f}), "
                  f"forward+backward {fb:.3f} s (cpu {fb_cpu:.3f})", flush=True)
    results["load_average_after"] = os.getloadavg()
    out = Path(__file__).resolve().parents[1] / "results" / "metrics_cost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
