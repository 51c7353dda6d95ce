"""Caption coding on the Kodak LLaVA-1.5 captions: every method, real bytes, timings (issue 2 targets).

Methods: raw UTF-8, zlib-9, bz2, raw LZMA2, brotli-11, zstd-22, zstd + COCO-caption dictionary,
the published method's scheme (LM ranks over 8-token windows + zlib) and LM arithmetic coding,
the last two with each offline default LM. Bits are 8 x the bytes each coder returns (a .stic
caption section's payload); LM coders also report the model's own -log2 likelihood of the same
tokens (the ideal code length) and the coder's overhead over it. Torch runs on 1 thread; the
machine's load average is recorded beside the timings, which it inflates.

    python bench/caption_coding.py [--methods zlib lm:gemma3-270m ...] [--limit N]

Writes results/caption_coding.json (per caption too) and results/caption_coding.md, after each
method, so an interrupted run keeps what it measured; --update re-measures only the given methods.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
CAPTIONS = Path("captions") / "kodak_llava15.csv"
COLUMN = "overall_description"
BASELINES = ["raw", "zlib", "bz2", "lzma", "brotli", "zstd", "zstd-dict"]


def default_methods() -> list[str]:
    from stic.text.lm import OFFLINE_MODELS

    return BASELINES + [f"{method}:{model}" for model in OFFLINE_MODELS for method in ("rank-zlib", "lm")]


def _ms(mean_s: float, max_s: float) -> str:
    return f"{1000 * mean_s:.1f} ({1000 * max_s:.1f})"


def markdown(report: dict) -> str:
    lines = [
        "# Caption coding on Kodak (LLaVA-1.5 captions)",
        "",
        f"{report['texts']} captions, {report['chars']} characters, {report['utf8_bytes']} UTF-8 bytes "
        f"(`{CAPTIONS}`, column `{COLUMN}`). Bits are real byte counts x 8 (caption section payload; "
        "the .stic header adds a few bytes). Times: milliseconds per caption, mean (max), torch on 1 thread, "
        f"on {os.cpu_count()} shared cores; the load average column shows how busy the machine was. "
        "Load s: building the coder (training the dictionary, loading the LM — once per model and run).",
        "",
        "| method | bits | bits/char | saving vs raw | ideal bits (NLL) | mean overhead bits | load s | encode ms | decode ms | load avg | round trip |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        if "skipped" in r:
            lines.append(f"| {r['method']} | skipped: {r['skipped']} ||||||||||")
            continue
        ideal = f"{r['ideal_bits']:.1f}" if "ideal_bits" in r else ""
        overhead = f"{r['mean_overhead_bits']:.1f}" if "mean_overhead_bits" in r else ""
        lines.append(
            f"| {r['coder']} | {r['total_bits']} | {r['bits_per_char']:.3f} | {100 * r['saving_vs_raw']:.1f}% | "
            f"{ideal} | {overhead} | {r['load_s']:.1f} | {_ms(r['encode_s'] / r['texts'], r['max_encode_s'])} | "
            f"{_ms(r['decode_s'] / r['texts'], r['max_decode_s'])} | {r['load_average_1m']:.1f} | "
            f"{'exact' if r['round_trip_ok'] else 'FAILED'} |"
        )
    lines += ["", "Runs:", *(f"- {run['date']}: `python bench/caption_coding.py{run['arguments']}`" for run in report["runs"]), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", help="default: all baselines + rank-zlib and lm with each offline LM")
    parser.add_argument("--limit", type=int, help="only the first N captions")
    parser.add_argument("--out", default=str(RESULTS / "caption_coding"), help="output path without suffix")
    parser.add_argument("--update", action="store_true", help="replace only these methods' rows in an existing report")
    args = parser.parse_args()

    import torch
    from tqdm import tqdm

    from stic.container import write_bytes_atomic
    from stic.paths import data_dir
    from stic.text.bench import bench_method, format_table, read_texts

    torch.set_num_threads(1)
    texts = read_texts(data_dir() / CAPTIONS, COLUMN)[: args.limit]
    methods = args.methods or default_methods()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.with_suffix(".json").read_text()) if args.update else {}
    if previous and previous.get("texts") != len(texts):
        raise SystemExit(f"--update: the existing report has {previous.get('texts')} captions, not {len(texts)}")
    run = {"arguments": "".join(f" {a}" for a in sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    report = {
        "captions": str(CAPTIONS),
        "column": COLUMN,
        "texts": len(texts),
        "chars": sum(len(t) for t in texts),
        "utf8_bytes": sum(len(t.encode()) for t in texts),
        "runs": [*previous.get("runs", []), run],
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "results": previous.get("results", []),
    }
    rows = {r["method"]: r for r in report["results"]}
    order = list(dict.fromkeys([*rows, *methods]))
    with tqdm(total=len(methods) * len(texts), desc="caption coding", unit="caption") as bar:
        for method in methods:
            bar.set_postfix_str(method)
            before = bar.n
            rows[method] = bench_method(method, texts, bar)
            rows[method].update(measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_average_1m=os.getloadavg()[0])
            bar.update(len(texts) - (bar.n - before))
            report["results"] = [rows[m] for m in order if m in rows]
            write_bytes_atomic(out.with_suffix(".json"), (json.dumps(report, indent=1) + "\n").encode())
            write_bytes_atomic(out.with_suffix(".md"), markdown(report).encode())
    print(format_table(report["results"]))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
