"""How few bits could an LM code the Kodak LLaVA captions in? Its own negative log-likelihood.

A cheap screen for candidate caption LMs before building a coder for them: one whole-sequence pass
per caption (preamble + caption + terminator), -log2 p summed over the caption's tokens. This is
the ideal code length; stic's arithmetic coder runs token by token and adds ~3 bits per caption
(bench/caption_lm.py measures real files). Any model `stic.text.lm.load_lm` takes: an offline
name, a .gguf file or a transformers directory.

    python bench/caption_nll.py --models qwen2.5-coder-1.5b.gguf --preambles none examples
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
from caption_lm import RESULTS, load_captions

from stic.text.lm import load_lm
from stic.text.preamble import get_preamble


@torch.no_grad()
def caption_nll_bits(lm, preamble_name: str, caption: str) -> tuple[float, int]:
    preamble = get_preamble(preamble_name)
    if preamble.learned:
        raise SystemExit("a learned-prefix preamble needs the coder's session: use bench/caption_lm.py")
    tokenizer = lm.tokenizer
    prefix = preamble.prefix_ids(tokenizer, lm.start_ids())
    ids = list(tokenizer.encode(caption, add_special_tokens=False)) + [preamble.terminator_id(tokenizer)]
    logits = lm.model(torch.tensor([prefix + ids])).logits[0, len(prefix) - 1 : -1].float()
    log_probs = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None])
    return -float(log_probs.sum()) / math.log(2), len(ids)


def bench_model(name: str, preambles: list[str], captions: list[str]) -> dict:
    start = time.perf_counter()
    lm = load_lm(name, engine="transformers")
    result = {"model": name, "class": type(lm.model).__name__, "load_s": round(time.perf_counter() - start, 1)}
    chars = sum(len(c) for c in captions)
    for preamble in preamble_names(preambles):
        start = time.perf_counter()
        scored = [caption_nll_bits(lm, preamble, c) for c in captions]
        bits = sum(b for b, _ in scored)
        result[preamble] = {
            "nll_bits_per_char": round(bits / chars, 4),
            "nll_bits_mean": round(bits / len(captions), 1),
            "tokens_mean": round(sum(n for _, n in scored) / len(captions), 1),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(name, preamble, result[preamble], flush=True)
    return result


def preamble_names(names: list[str]) -> list[str]:
    for name in names:
        get_preamble(name)  # fails early on a typo
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--preambles", nargs="+", default=["none", "examples"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "caption_nll.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    captions = load_captions()
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {"models": {}}
    for name in args.models:
        previous["models"][Path(name).name] = bench_model(name, args.preambles, captions)
        previous["meta"] = {
            "benchmark": "whole-sequence NLL of the 24 Kodak LLaVA-1.5 captions (ideal code length)",
            "threads": args.threads, "machine": platform.machine(), "torch": torch.__version__,
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        }  # fmt: skip
        args.out.write_text(json.dumps(previous, indent=1) + "\n")


if __name__ == "__main__":
    main()
