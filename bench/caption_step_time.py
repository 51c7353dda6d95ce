"""Where a caption decode's time goes: one token's pass through the exact engine (the default
SmolLM2 model, its learned prefix and preamble, 20 tokens of context), with and without the int8
matrix products (replayed from a cache, so what is left is the engine's numpy and Python work).
One thread, 200 passes; min and median.

    python bench/caption_step_time.py        # writes results/caption_step_time.json
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from stic.text.int8_product import Int8Matrix
from stic.text.registry import get_text_coder

ROOT = Path(__file__).resolve().parents[1]
TEXT = "The image features a large group of people standing on a beach near the ocean, with some of them holding kites."


def passes(decoder, state, ids: list[int], count: int) -> list[float]:
    times = []
    for i in range(count):
        length = state.length
        start = time.perf_counter()
        decoder.forward(state, [ids[i % len(ids)]])
        times.append(time.perf_counter() - start)
        state.length = length  # the same position every time
    return times


def summary(times: list[float]) -> dict:
    return {"min_ms": round(1e3 * min(times), 2), "median_ms": round(1e3 * statistics.median(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "caption_step_time.json")
    args = parser.parse_args()
    coder = get_text_coder("lm:smollm2-135m")
    lm = coder.lm
    session = lm.session(coder._prefix, coder._learned)
    ids = lm.tokenizer.encode(TEXT)
    for token in ids[:20]:
        session.push(token)
    decoder, state = session._decoder, session._state
    report = {"load_average_start": [round(x, 2) for x in os.getloadavg()], "threads": 1}
    report["token_pass"] = summary(passes(decoder, state, ids, args.passes))
    products, real = {}, Int8Matrix.__call__

    def replayed(matrix, q):  # the first product of each shape, replayed: no weights read
        key = (q.shape[0], matrix.out_features)
        if key not in products:
            products[key] = real(matrix, q)
        return products[key]

    Int8Matrix.__call__ = replayed
    try:
        report["token_pass_without_products"] = summary(passes(decoder, state, ids, args.passes))
    finally:
        Int8Matrix.__call__ = real
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
