"""Choose the caption LM's preamble (and check logit temperature) on a held-out proxy, never Kodak.

The proxy is bench/data/caption_proxy.txt: 32 LLaVA-1.5-style descriptions written by hand from
the human COCO captions of coco_mini images (not Kodak). Even lines are an example pool a preamble
may use, odd lines the validation set every variant is scored on: real code lengths (bytes x 8)
and the model's own likelihood on the coding schedule, plus CPU ms per coded token (the preamble's
length costs attention time on every token). Writes results/caption_preamble.json.

    python bench/caption_preamble.py [--model smollm2-135m] [--temperatures]

Caveat: the proxy and the preambles' examples share an author, so the proxy flatters
hand-written examples; it is for ranking variants, not for predicting Kodak numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from stic.text.lm import CODING_THREADS, load_lm
from stic.text.lm_coder import DEFAULT_MODEL, LMArithmeticCoder
from stic.text.preamble import EXAMPLE_DESCRIPTIONS, PREAMBLES, Preamble

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "bench" / "data" / "caption_proxy.txt"
OUT = ROOT / "results" / "caption_preamble.json"
TEMPERATURES = (0.9, 0.95, 1.0, 1.05, 1.1, 1.15)


def load_proxy() -> tuple[list[str], list[str]]:
    lines = [
        line.rstrip("\n") for line in PROXY.read_text(encoding="utf-8").splitlines(keepends=True)
    ]
    texts = [line for line in lines if line and not line.startswith("#")]
    return texts[0::2], texts[1::2]


def variants(pool: list[str]) -> dict[str, Preamble]:
    examples = PREAMBLES["examples"]
    chat_lead = (
        "\n<|im_start|>user\nDescribe this image in detail.<|im_end|>\n<|im_start|>assistant\n"
    )

    def like_examples(name: str, chosen) -> Preamble:
        return Preamble(
            name,
            header=examples.header,
            examples=tuple(chosen),
            lead=examples.lead,
            terminator=examples.terminator,
        )

    return {
        "none": PREAMBLES["none"],
        "plain": PREAMBLES["plain"],
        "examples": examples,
        "examples, first 4 dropped (6)": like_examples("ex6", EXAMPLE_DESCRIPTIONS[4:]),
        "examples + 4 pool (14)": like_examples("ex14", [*pool[:4], *EXAMPLE_DESCRIPTIONS]),
        "examples + 16 pool (26)": like_examples("ex26", [*EXAMPLE_DESCRIPTIONS, *pool]),
        "10 pool instead of examples": like_examples("pool10", pool[:10]),
        # SmolLM2-Instruct's chat format: EOS (<|im_end|>) ends each description
        "examples in chat format": Preamble(
            "chat", header="", examples=EXAMPLE_DESCRIPTIONS, lead=chat_lead.lstrip("\n")
        ),
    }


def score(coder: LMArithmeticCoder, texts: list[str]) -> dict:
    coder.lm.session(coder._prefix)  # memoise the preamble outside the timing
    bits = ideal = chars = steps = 0
    cpu = 0.0
    for text in texts:
        start = time.thread_time()
        result = coder.encode_measured(text)
        cpu += time.thread_time() - start
        bits += 8 * len(result.data)
        ideal += result.ideal_bits
        chars += len(text)
        steps += result.n_tokens + 1
    return {
        "prefix_tokens": len(coder._prefix),
        "bits_per_char": round(bits / chars, 4),
        "ideal_bits_per_char": round(ideal / chars, 4),
        "encode_cpu_ms_per_token": round(1e3 * cpu / steps, 2),
    }


def temperature_sweep(coder: LMArithmeticCoder, texts: list[str]) -> dict:
    """Model bits/char of `texts` with logits divided by T (no coding: likelihood only)."""
    totals = dict.fromkeys(TEMPERATURES, 0.0)
    for text in tqdm(texts, desc="temperature", leave=False):
        ids = [*coder._token_ids(text), coder._end]
        session = coder.lm.session(coder._prefix)
        for position, token in enumerate(ids):
            logits = session.logits().double()
            for t in TEMPERATURES:
                totals[t] -= float(torch.log_softmax(logits / t, -1)[token]) / math.log(2)
            if position + 1 < len(ids):
                session.push(token)
    chars = sum(len(t) for t in texts)
    return {str(t): round(v / chars, 4) for t, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--temperatures", action="store_true", help="also sweep logit temperature")
    args = parser.parse_args()
    torch.set_num_threads(CODING_THREADS)
    pool, validation = load_proxy()
    lm = load_lm(args.model)
    result = {
        "model": args.model,
        "proxy": str(PROXY.relative_to(ROOT)),
        "validation_texts": len(validation),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "variants": {},
    }
    for name, preamble in tqdm(variants(pool).items(), desc="preambles"):
        result["variants"][name] = score(LMArithmeticCoder(lm, preamble=preamble), validation)
        print(name, result["variants"][name], flush=True)
    if args.temperatures:  # on pool + validation: neither is in the default preamble
        coder = LMArithmeticCoder(lm, preamble="examples")
        result["temperature_bits_per_char"] = temperature_sweep(coder, pool + validation)
        print("temperature", result["temperature_bits_per_char"])
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
