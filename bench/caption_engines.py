"""The exact caption engine against stic 0.1's float engine: bits, speed and load time.

Codes the 24 Kodak LLaVA captions and one human caption per COCO-mini image (239) with the
default model and preamble, once with the exact integer engine (`lm:`, the default) and once
with the float lean engine (`lm-float:`, what stic 0.1 used), decodes every caption and checks it,
and times a cached model load and `import torch` in fresh processes. One thread; the machine's
load average is recorded beside the timings.

    python bench/caption_engines.py            # writes results/caption_engines.json
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def data_dir() -> Path:
    return Path(os.environ.get("STIC_DATA") or ROOT.parent / "shared" / "data")


def caption_sets() -> dict[str, list[str]]:
    kodak = data_dir() / "captions" / "kodak_llava15.csv"
    coco = data_dir() / "coco_mini" / "pairs.jsonl"
    if not kodak.is_file() or not coco.is_file():
        sys.exit(f"caption files not found under {data_dir()} (set STIC_DATA)")
    with kodak.open(newline="", encoding="utf-8") as f:
        kodak_texts = [row["overall_description"] for row in csv.DictReader(f)]
    coco_texts = [json.loads(line)["captions"][0].strip() for line in coco.read_text().splitlines() if line.strip()]
    return {"kodak_llava": kodak_texts, "coco_mini_first_caption": coco_texts}


def bench_set(coder, texts: list[str]) -> dict:
    rows = []
    for text in texts:
        start = time.perf_counter()
        data = coder.encode(text)
        encoded = time.perf_counter() - start
        start = time.perf_counter()
        ok = coder.decode(data) == text
        rows.append({"chars": len(text), "bits": 8 * len(data), "encode_s": encoded, "decode_s": time.perf_counter() - start, "ok": ok})
    chars = sum(r["chars"] for r in rows)
    return {
        "texts": len(rows),
        "chars": chars,
        "bits_per_char": round(sum(r["bits"] for r in rows) / chars, 4),
        "encode_s_mean": round(statistics.mean(r["encode_s"] for r in rows), 3),
        "decode_s_mean": round(statistics.mean(r["decode_s"] for r in rows), 3),
        "decode_s_max": round(max(r["decode_s"] for r in rows), 3),
        "all_round_trip": all(r["ok"] for r in rows),
    }


def _fresh_process_seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, default=RESULTS / "caption_engines.json")
    args = parser.parse_args()
    import torch

    from stic.text.registry import get_text_coder

    torch.set_num_threads(1)
    sets = caption_sets()
    report = {"model": args.model, "threads": 1, "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    report["import_torch_s"] = _fresh_process_seconds("import torch")
    load = f"from stic.text.registry import get_text_coder; get_text_coder('lm:{args.model}')"
    _fresh_process_seconds(load)  # make sure the converted model is cached
    report["exact_cached_load_s_including_imports"] = _fresh_process_seconds(load)
    report["engines"] = {}
    for method in ("lm", "lm-float"):
        coder = get_text_coder(f"{method}:{args.model}")
        coder.encode("warm up")  # runs and memoises the preamble once, as a long-lived coder would
        report["engines"][method] = {name: bench_set(coder, texts) for name, texts in sets.items()}
        report["engines"][method]["fingerprint"] = coder.fingerprint().hex()
        print(method, json.dumps(report["engines"][method], indent=1))
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
