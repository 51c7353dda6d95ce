"""How long a warm `stic.pipeline.encode` takes on Kodak with the default settings (MSE model, the
LLaVA caption fitted to CLIP's window, colour map, the model's default refiner), models already
loaded: as stic does it (the exact-engine caption coded on a second thread beside the image), with
the caption coded before the image (as stic <= 0.4 did), and the caption's own encode alone.
Best of --repeats per image.

    python bench/encode_time.py [--images kodim01 kodim02 kodim03] [--quality 2] [--repeats 3]

Writes results/encode_time.json. Run it on a quiet machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from stic.caption.fixed import PrecomputedCaptioner
from stic.image.io import load_image
from stic.paths import data_dir
from stic.pipeline import encode
from stic.text.lm_coder import LMArithmeticCoder
from stic.text.registry import get_text_coder
from stic.threads import fixed_threads

REPO = Path(__file__).resolve().parents[1]


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(min(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim02", "kodim03"])
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "encode_time.json")
    args = parser.parse_args()

    captioner = PrecomputedCaptioner(data_dir() / "captions" / "kodak_llava15.csv")
    coder = get_text_coder("lm")
    rows, loads = [], [os.getloadavg()[0]]
    for name in args.images:
        image = load_image(data_dir() / "kodak" / f"{name}.png")
        caption = captioner.caption(image, name).text  # fitted to CLIP's window, as `stic encode` does
        data = encode(image, quality=args.quality, caption=caption).data  # loads every model
        beside = _best(lambda: encode(image, quality=args.quality, caption=caption), args.repeats)
        default = LMArithmeticCoder.thread_independent
        LMArithmeticCoder.thread_independent = False  # the caption first, then the image
        try:
            before = _best(lambda: encode(image, quality=args.quality, caption=caption), args.repeats)
            assert encode(image, quality=args.quality, caption=caption).data == data  # same bytes either way
        finally:
            LMArithmeticCoder.thread_independent = default
        with fixed_threads(1):
            alone = _best(lambda: coder.encode(caption), args.repeats)
        rows.append({"image": name, "bytes": len(data), "caption_chars": len(caption),
                     "warm_encode_s": beside, "warm_encode_caption_first_s": before,
                     "caption_encode_alone_one_thread_s": alone})  # fmt: skip
        loads.append(os.getloadavg()[0])
        print(rows[-1], flush=True)
    means = {key: round(statistics.mean(r[key] for r in rows), 3) for key in rows[0] if key.endswith("_s")}
    result = {"command": "python bench/encode_time.py " + " ".join(sys.argv[1:]), "cpu_count": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "load_average_1min": [round(x, 2) for x in loads],
              "means": means, "images": rows}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(means))


if __name__ == "__main__":
    main()
