"""Fuzz the .stic parser and the full decoder; record cases, time and every distinct error message.

Three parts, all seeded (tests/fuzz_cases.py has the mutators and the rule a case must obey):

* exhaustive: every truncation and every single-bit flip of every seed file, parsed;
* parser: N random mutations (1-3 stacked mutators: random bytes, bit flips, over-long and oversized
  varints, wrong section counts, huge declared sizes, broken framing, CRC-valid payload damage),
  parsed and described as `stic info` does;
* decoder: M CRC-valid mutations run through the full decoder (shipped image models, the default
  LM caption coder for the LM seeds, the Real-ESRGAN compact refiner), each under a time limit.

A crash is any exception that is not a stic error, an empty message or a wrong-size image; a hang
is a case past its time limit. The run fails (exit 1) on either.

    OMP_NUM_THREADS=1 python bench/fuzz_stic.py --parser-cases 200000 --decode-cases 1500
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the mutators are shared with tests/test_fuzz.py

import fuzz_cases as fc  # noqa: E402  (after the path insert above)

#: mutators whose output keeps every CRC valid, so that the damage reaches the decoders
DECODER_MUTATORS = ["payload_damage", "declared_size", "section_codec", "section_fingerprint", "section_flags", "section_shuffle", "header_field"]


def template(message: str) -> str:
    """An error message with its numbers, hex digests and quoted values blanked: one line per kind."""
    message = message.splitlines()[0]
    message = re.sub(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{8}\b", "<hex>", message)  # fingerprints
    message = re.sub(r"\b\d+x\d+\b", "<w>x<h>", message)
    return re.sub(r"(?<![\w-])\d+(?:,\d{3})*", "<n>", message)  # not in names (stic-q1, bz2, UTF-8)


class Tally:
    def __init__(self):
        self.status = collections.Counter()
        self.by_mutator = collections.defaultdict(collections.Counter)
        self.templates: dict[str, dict] = {}
        self.raw_messages: set[str] = set()
        self.failures: list[dict] = []
        self.max_seconds = 0.0
        self.reached_decoder = 0

    def add(self, mutator: str, seed: str, outcome: fc.Outcome, data: bytes) -> None:
        self.status[outcome.status] += 1
        self.by_mutator[mutator][outcome.status] += 1
        self.max_seconds = max(self.max_seconds, outcome.seconds)
        self.reached_decoder += outcome.reached_decoder
        if outcome.status in ("crash", "hang"):
            self.failures.append({"mutator": mutator, "seed": seed, "status": outcome.status,
                                  "message": outcome.message, "data_hex": data.hex()})  # fmt: skip
        elif outcome.message:
            self.raw_messages.add(outcome.message)
            entry = self.templates.setdefault(template(outcome.message), {"count": 0, "example": outcome.message})
            entry["count"] += 1

    def summary(self, seconds: float, cpu: float) -> dict:
        return {
            "cases": sum(self.status.values()),
            "wall_s": round(seconds, 1),
            "cpu_s": round(cpu, 1),
            "status": dict(self.status),
            "reached_decoder": self.reached_decoder,
            "max_case_s": round(self.max_seconds, 3),
            "by_mutator": {k: dict(v) for k, v in sorted(self.by_mutator.items())},
            "distinct_messages": len(self.raw_messages),
            "failures": self.failures,
        }


def exhaustive(seeds: dict[str, bytes], tally: Tally) -> None:
    for name, seed in tqdm(seeds.items(), desc="truncations + bit flips", unit="seed"):
        for cut in range(len(seed)):
            data = seed[:cut]
            tally.add("every_truncation", name, fc.run_case(data), data)
        for pos in range(len(seed)):
            for bit in range(8):
                data = bytearray(seed)
                data[pos] ^= 1 << bit
                tally.add("every_bit_flip", name, fc.run_case(bytes(data)), bytes(data))


def parser_fuzz(seeds, layouts, n: int, rng: random.Random, tally: Tally) -> None:
    names = list(seeds)
    for _ in tqdm(range(n), desc="parser", unit="case", mininterval=2):
        seed = rng.choice(names)
        chain, data = fc.mutate(rng, seeds[seed], layouts[seed], rounds=3)
        tally.add(chain if "+" not in chain else f"stacked ({chain.count('+') + 1} mutators)", seed, fc.run_case(data), data)


def decoder_fuzz(seeds, layouts, n: int, rng: random.Random, tally: Tally, time_limit: float) -> None:
    decode = fc.decoder(refine=True)
    names = list(seeds)
    for i in tqdm(range(n), desc="decoder", unit="case"):
        seed = names[i % len(names)]
        mutator = rng.choice(DECODER_MUTATORS)
        data = fc.MUTATORS[mutator](rng, seeds[seed], layouts[seed])
        tally.add(mutator, seed, fc.run_case(data, decode, time_limit), data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parser-cases", type=int, default=200_000)
    parser.add_argument("--decode-cases", type=int, default=1_500)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per decoder case before it counts as a hang")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "fuzz_stic.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    started = time.perf_counter()
    seeds = fc.make_seeds(with_lm=True)
    layouts = {k: fc.Layout.of(v) for k, v in seeds.items()}
    seed_seconds = time.perf_counter() - started
    rng = random.Random(args.seed)
    parts = {}
    for part, run in [
        ("exhaustive", lambda t: exhaustive(seeds, t)),
        ("parser", lambda t: parser_fuzz(seeds, layouts, args.parser_cases, rng, t)),
        ("decoder", lambda t: decoder_fuzz(seeds, layouts, args.decode_cases, rng, t, args.time_limit)),
    ]:
        tally, wall, cpu = Tally(), time.perf_counter(), time.process_time()
        run(tally)
        parts[part] = (tally, time.perf_counter() - wall, time.process_time() - cpu)
        print(f"{part}: {tally.summary(0, 0)['cases']} cases, {dict(tally.status)}", flush=True)

    templates: dict[str, dict] = {}
    for tally, _, _ in parts.values():
        for key, entry in tally.templates.items():
            merged = templates.setdefault(key, {"count": 0, "example": entry["example"]})
            merged["count"] += entry["count"]
    failures = sum(len(t.failures) for t, _, _ in parts.values())
    result = {
        "description": "bench/fuzz_stic.py: .stic parser and full-decoder fuzzing (tests/fuzz_cases.py)",
        "command": "OMP_NUM_THREADS=1 python bench/fuzz_stic.py " + " ".join(sys.argv[1:]),
        "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False).stdout.strip(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
        "torch_threads": 1,
        "seed": args.seed,
        "seed_files": {k: len(v) for k, v in seeds.items()},
        "seed_build_s": round(seed_seconds, 1),
        "total_cases": sum(t.summary(0, 0)["cases"] for t, _, _ in parts.values()),
        "crashes_and_hangs": failures,
        "parts": {name: t.summary(wall, cpu) for name, (t, wall, cpu) in parts.items()},
        "distinct_error_templates": len(templates),
        "error_templates": dict(sorted(templates.items(), key=lambda kv: -kv[1]["count"])),
    }
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"{result['total_cases']} cases, {failures} crashes/hangs, {len(templates)} distinct error templates -> {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
