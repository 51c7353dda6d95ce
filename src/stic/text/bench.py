"""Measure caption coders on a set of texts: real byte counts, timings, and a round-trip check.

Shared by `stic text bench` and `bench/caption_coding.py`. Bits are 8 x the length of the bytes
each coder returns (what a .stic caption section would hold, without the container's few header
bytes); bits/char divides by Unicode code points; the saving is against raw UTF-8. Load time (model
loading, dictionary training) is reported apart from per-caption encode/decode time.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from stic.errors import InputError, ModelNotFoundError, SticError
from stic.text.registry import get_text_coder

DEFAULT_METHODS = ("raw", "zlib", "bz2", "lzma", "brotli", "zstd", "zstd-dict", "rank-zlib", "lm")


def read_texts(csv_path: str | Path, column: str) -> list[str]:
    """The non-empty cells of `column`, in file order (an empty cell is a missing caption)."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if column not in (reader.fieldnames or []):
                known = ", ".join(reader.fieldnames or []) or "none"
                raise InputError(f"{csv_path} has no column {column!r} (columns: {known})")
            return [row[column] for row in reader if row[column]]
    except OSError as err:
        raise InputError(f"cannot read {csv_path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise InputError(f"{csv_path} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise InputError(f"{csv_path} is not a readable CSV file: {err}") from err


def bench_method(method: str, texts: Sequence[str], progress: tqdm | None = None) -> dict:
    """Code every text with one method; never raises for a missing model (reports it instead)."""
    started = time.perf_counter()
    try:
        coder = get_text_coder(method)
    except ModelNotFoundError as err:
        return {"method": method, "skipped": str(err)}
    load_s = time.perf_counter() - started
    rows = []
    for index, text in enumerate(texts):
        t0 = time.perf_counter()
        ideal_bits = None
        try:
            if hasattr(coder, "encode_measured"):  # LM coders also report the model's own NLL
                measured = coder.encode_measured(text)
                data, ideal_bits = measured.data, measured.ideal_bits
            else:
                data = coder.encode(text)
            t1 = time.perf_counter()
            decoded = coder.decode(data)
        except SticError as err:  # e.g. a tokenizer that cannot reproduce a text: the method fails
            return {"method": method, "skipped": f"{coder.name} failed on text {index}: {err}"}
        t2 = time.perf_counter()
        rows.append(
            {
                "chars": len(text),
                "bits": 8 * len(data),
                "encode_s": t1 - t0,
                "decode_s": t2 - t1,
                "round_trip": decoded == text,
                **({} if ideal_bits is None else {"ideal_bits": ideal_bits, "overhead_bits": 8 * len(data) - ideal_bits}),
            }
        )
        if progress is not None:
            progress.update(1)
    chars = sum(len(t) for t in texts)
    raw_bits = 8 * sum(len(t.encode("utf-8")) for t in texts)
    bits = sum(r["bits"] for r in rows)
    overheads = [r["overhead_bits"] for r in rows if "overhead_bits" in r]
    ideal = {} if not overheads else {
        "ideal_bits": sum(r["ideal_bits"] for r in rows),
        "mean_overhead_bits": sum(overheads) / len(overheads),
        "max_overhead_bits": max(overheads),
    }
    return {
        "method": method,
        "coder": coder.name,
        "fingerprint": coder.fingerprint().hex(),
        "texts": len(texts),
        "chars": chars,
        "total_bits": bits,
        "bits_per_char": bits / chars if chars else 0.0,
        "saving_vs_raw": 1 - bits / raw_bits if raw_bits else 0.0,
        "load_s": load_s,
        "encode_s": sum(r["encode_s"] for r in rows),
        "decode_s": sum(r["decode_s"] for r in rows),
        "max_encode_s": max((r["encode_s"] for r in rows), default=0.0),
        "max_decode_s": max((r["decode_s"] for r in rows), default=0.0),
        "round_trip_ok": all(r["round_trip"] for r in rows),
        **ideal,
        "per_text": rows,
    }


def run_bench(texts: Sequence[str], methods: Sequence[str] = DEFAULT_METHODS, show_progress: bool = True) -> list[dict]:
    if not texts:
        raise InputError("no texts to benchmark")
    results = []
    with tqdm(total=len(methods) * len(texts), desc="caption coding", unit="text", disable=not show_progress) as bar:
        for method in methods:
            bar.set_postfix_str(method)
            before = bar.n
            result = bench_method(method, texts, bar)
            bar.update(len(texts) - (bar.n - before))  # a skipped method still counts as done
            results.append(result)
    return results


def format_table(results: Sequence[dict]) -> str:
    """A fixed-width table: one line per method; skipped methods say why."""
    header = f"{'method':<24} {'bits':>8} {'bits/char':>9} {'saving':>7} {'load s':>7} {'enc s':>7} {'dec s':>7}  ok"
    lines = [header, "-" * len(header)]
    for r in results:
        if "skipped" in r:
            lines.append(f"{r['method']:<24} skipped: {r['skipped']}")
            continue
        lines.append(
            f"{r['coder']:<24} {r['total_bits']:>8} {r['bits_per_char']:>9.3f} {100 * r['saving_vs_raw']:>6.1f}% "
            f"{r['load_s']:>7.2f} {r['encode_s']:>7.2f} {r['decode_s']:>7.2f}  {'yes' if r['round_trip_ok'] else 'NO'}"
        )
    return "\n".join(lines)
