"""Benchmark LM arithmetic coding of the Kodak LLaVA captions: bits, overhead vs NLL, speed, load.

For each offline model and preamble it codes every caption for real (bits are file bytes x 8),
decodes it back and checks the text, and records the model's own -log2 likelihood along the same
token-by-token schedule (the coder's overhead is the difference). Runs on one thread.

    python bench/caption_lm.py --models smollm2-135m gemma3-270m            # one JSON per model
    python bench/caption_lm.py --summarise                                  # results/caption_lm.json

`--decode-preambles` limits decoding (2x the time) to some preambles; the others are encoded only.
`--first-load` also times a load from an empty cache (GGUF conversion), in a temporary $STIC_CACHE.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from stic.text.lm import CODING_THREADS, load_lm
from stic.text.lm_coder import DEFAULT_MODEL, LMArithmeticCoder, default_preamble
from stic.text.prefix import has_shipped_prefix

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def data_dir() -> Path:
    return Path(os.environ.get("STIC_DATA") or ROOT.parent / "shared" / "data")


def load_captions(column: str = "overall_description") -> list[str]:
    path = data_dir() / "captions" / "kodak_llava15.csv"
    if not path.is_file():
        sys.exit(f"caption file not found: {path} (set STIC_DATA)")
    with path.open(newline="", encoding="utf-8") as f:
        return [row[column] for row in csv.DictReader(f)]


def timed_load(name: str) -> tuple[object, float]:
    start = time.perf_counter()
    lm = load_lm(name)
    return lm, time.perf_counter() - start


def first_load_seconds(name: str) -> float:
    previous = os.environ.get("STIC_CACHE")
    with tempfile.TemporaryDirectory() as empty:
        os.environ["STIC_CACHE"] = empty
        try:
            return timed_load(name)[1]
        finally:
            if previous is None:
                del os.environ["STIC_CACHE"]
            else:
                os.environ["STIC_CACHE"] = previous


def bench_preamble(lm, preamble: str, captions: list[str], decode: bool) -> dict:
    coder = LMArithmeticCoder(lm, preamble=preamble)
    start = time.perf_counter()
    lm.session(coder._prefix, coder._learned)  # runs and memoises the preamble, as a long-lived coder would
    prefix_s = time.perf_counter() - start
    rows = []
    for text in tqdm(captions, desc=f"{lm.name}/{preamble}", leave=False):
        wall, cpu = time.perf_counter(), time.thread_time()
        result = coder.encode_measured(text)
        row = {
            "chars": len(text),
            "tokens": result.n_tokens,
            "bits": 8 * len(result.data),
            "ideal_bits": round(result.ideal_bits, 3),
            "overhead_bits": round(8 * len(result.data) - result.ideal_bits, 3),
            "encode_s": round(time.perf_counter() - wall, 4),
            "encode_cpu_s": round(time.thread_time() - cpu, 4),
        }
        if decode:
            wall, cpu = time.perf_counter(), time.thread_time()
            decoded = coder.decode(result.data)
            row["decode_s"] = round(time.perf_counter() - wall, 4)
            row["decode_cpu_s"] = round(time.thread_time() - cpu, 4)
            row["round_trip"] = decoded == text
        rows.append(row)
    chars = sum(r["chars"] for r in rows)
    summary = {
        "preamble": preamble,
        "prefix_tokens": len(coder._prefix),
        "learned_prefix_positions": 0 if coder._learned is None else coder._learned.length,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "prefix_s": round(prefix_s, 3),
        "fingerprint": coder.fingerprint().hex(),
        "captions": len(rows),
        "total_chars": chars,
        "total_bits": sum(r["bits"] for r in rows),
        "bits_per_char": round(sum(r["bits"] for r in rows) / chars, 4),
        "ideal_bits_per_char": round(sum(r["ideal_bits"] for r in rows) / chars, 4),
        "overhead_bits_mean": round(statistics.mean(r["overhead_bits"] for r in rows), 3),
        "overhead_bits_max": round(max(r["overhead_bits"] for r in rows), 3),
        "tokens_mean": round(statistics.mean(r["tokens"] for r in rows), 1),
    }
    for key in ("encode_s", "encode_cpu_s", "decode_s", "decode_cpu_s"):
        if key in rows[0]:
            summary[f"{key}_mean"] = round(statistics.mean(r[key] for r in rows), 3)
            summary[f"{key}_max"] = round(max(r[key] for r in rows), 3)
    if decode:
        summary["all_round_trip"] = all(r["round_trip"] for r in rows)
    summary["per_caption"] = rows
    return summary


def bench_model(
    name: str, preambles: list[str], decode_preambles: set[str], first_load: bool
) -> dict:
    captions = load_captions()
    result = {"model": name, "threads": CODING_THREADS, "torch": torch.__version__}
    result["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    result["load_average_start"] = [round(x, 2) for x in os.getloadavg()]  # shared machine?
    if first_load:
        result["load_first_s"] = round(first_load_seconds(name), 2)
    timed_load(name)  # make sure the cache exists, then time a cached load
    lm, seconds = timed_load(name)
    result["load_cached_s"] = round(seconds, 2)
    result["engine"] = lm.engine
    result["lm_fingerprint"] = lm.fingerprint().hex()
    out = RESULTS / f"caption_lm_{name}.json"
    # preambles not run now keep their earlier results
    result["preambles"] = json.loads(out.read_text())["preambles"] if out.is_file() else {}
    for preamble in preambles:  # saved after each preamble: a long run keeps what it measured
        if preamble == "tuned" and not has_shipped_prefix(name):
            print(f"{name}: no learned prefix ships, skipping the tuned preamble")
            continue
        result["preambles"][preamble] = bench_preamble(
            lm, preamble, captions, decode=preamble in decode_preambles
        )
        result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def summarise() -> dict:
    models = {}
    for path in sorted(RESULTS.glob("caption_lm_*.json")):
        data = json.loads(path.read_text())
        models[data["model"]] = data
    table = []
    for name, data in models.items():
        for preamble, p in data["preambles"].items():
            table.append(
                {
                    "model": name,
                    "preamble": preamble,
                    "bits_per_char": p["bits_per_char"],
                    "ideal_bits_per_char": p["ideal_bits_per_char"],
                    "overhead_bits_mean": p["overhead_bits_mean"],
                    "overhead_bits_max": p["overhead_bits_max"],
                    "encode_s_mean": p.get("encode_s_mean"),
                    "encode_cpu_s_mean": p.get("encode_cpu_s_mean"),
                    "decode_s_mean": p.get("decode_s_mean"),
                    "decode_cpu_s_mean": p.get("decode_cpu_s_mean"),
                    "all_round_trip": p.get("all_round_trip"),
                    "load_cached_s": data.get("load_cached_s"),
                    "load_first_s": data.get("load_first_s"),
                    "engine": data["engine"],
                    "load_average": p.get("load_average_start", data.get("load_average_start")),
                }
            )
    best = min(table, key=lambda row: row["bits_per_char"])
    return {
        "benchmark": "LM arithmetic coding of ../shared/data/captions/kodak_llava15.csv "
        "(overall_description, 24 captions), real code lengths; one thread",
        "default": {"model": DEFAULT_MODEL, "preamble": default_preamble(DEFAULT_MODEL)},
        "lowest_bits": {"model": best["model"], "preamble": best["preamble"]},
        "targets": {"bits_per_char": 0.50, "overhead_bits_per_caption": 16, "encode_decode_s": 1.0},
        "table": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--preambles", nargs="*", default=["none", "plain", "examples", "tuned"])
    parser.add_argument("--decode-preambles", nargs="*", default=None, help="default: all")
    parser.add_argument("--first-load", action="store_true")
    parser.add_argument("--summarise", action="store_true", help="merge per-model JSON files")
    args = parser.parse_args()
    torch.set_num_threads(CODING_THREADS)
    RESULTS.mkdir(exist_ok=True)
    if args.summarise:
        out = RESULTS / "caption_lm.json"
        out.write_text(json.dumps(summarise(), indent=1) + "\n")
        print(out.read_text())
        return
    decode = set(args.preambles if args.decode_preambles is None else args.decode_preambles)
    for name in args.models:
        result = bench_model(name, args.preambles, decode, args.first_load)
        for p in result["preambles"].values():
            print(
                f"{name:14s} {p['preamble']:9s} {p['bits_per_char']:.4f} bits/char "
                f"(ideal {p['ideal_bits_per_char']:.4f}, overhead mean {p['overhead_bits_mean']:.1f} "
                f"max {p['overhead_bits_max']:.1f} bits) encode {p['encode_s_mean']:.2f} s "
                f"decode {p.get('decode_s_mean', float('nan')):.2f} s"
            )


if __name__ == "__main__":
    main()
