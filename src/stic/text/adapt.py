"""Prefix tuning: train a learned prefix (stic.text.prefix) for a caption LM on example captions.

The model's weights stay frozen; only the key/value states of a few positions per layer are
trained, so the result is small and cannot change what the model does without it. Training
starts from the states of the written examples preamble (a good prior), follows the coding
layout exactly (prefix, the "tuned" preamble's lead, caption, terminator) and minimises the
caption's code length in bits. Never train on the captions you evaluate on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from stic.errors import InputError
from stic.text.lm import LanguageModel, cache_argument
from stic.text.preamble import get_preamble
from stic.text.prefix import LearnedPrefix
from stic.threads import fixed_threads


@dataclass(frozen=True)
class AdaptConfig:
    length: int = 32  # prefix positions
    steps: int = 150
    batch_size: int = 8
    lr: float = 3e-3
    validation: float = 0.1  # share of the corpus held out to report bits/char
    seed: int = 0
    threads: int = 1


@dataclass
class AdaptReport:
    train_texts: int
    validation_texts: int
    validation_bits_per_char: list[tuple[int, float]]  # (step, bits/char), before and after


class _Layout:
    """Token ids of a caption as the "tuned" preamble codes it: lead + caption + terminator."""

    def __init__(self, lm: LanguageModel):
        preamble = get_preamble("tuned")
        tokenizer = lm.tokenizer
        self.lead = list(tokenizer.encode(preamble.lead, add_special_tokens=False))
        self.end = preamble.terminator_id(tokenizer)
        self.tokenizer = tokenizer

    def ids(self, text: str) -> list[int]:
        return self.lead + list(self.tokenizer.encode(text, add_special_tokens=False)) + [self.end]


class _PrefixTrainer:
    def __init__(self, lm: LanguageModel, length: int):
        from transformers import DynamicCache

        self.model, self.layout = lm.model, _Layout(lm)
        self.config = self.model.config
        self.n_layers = self.config.num_hidden_layers
        self.length = length
        examples = get_preamble("examples").prefix_ids(lm.tokenizer, lm.start_ids())
        init_ids = (examples * (1 + length // len(examples)))[:length]
        cache = DynamicCache(config=self.config)
        with torch.no_grad():
            self.model(input_ids=torch.tensor([init_ids]), **cache_argument(self.model, cache))
        self.keys = torch.nn.Parameter(self._stack(cache, "keys"))
        self.values = torch.nn.Parameter(self._stack(cache, "values"))

    def _stack(self, cache, kind: str) -> torch.Tensor:
        return torch.stack([getattr(cache.layers[i], kind)[0] for i in range(self.n_layers)]).clone()

    def bits(self, texts: Sequence[str]) -> torch.Tensor:
        """Total code length in bits (the model's -log2 likelihood) of `texts` after the prefix."""
        from transformers import DynamicCache

        seqs = [self.layout.ids(t) for t in texts]
        batch, width = len(seqs), max(len(s) for s in seqs)
        ids = torch.full((batch, width), self.layout.end)
        mask = torch.zeros(batch, width, dtype=torch.long)
        for i, seq in enumerate(seqs):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
        cache = DynamicCache(config=self.config)
        for layer in range(self.n_layers):
            cache.update(
                self.keys[layer].expand(batch, -1, -1, -1),
                self.values[layer].expand(batch, -1, -1, -1),
                layer,
            )
        positions = (self.length + torch.arange(width)).expand(batch, -1)
        full_mask = torch.cat([torch.ones(batch, self.length, dtype=torch.long), mask], 1)
        logits = self.model(
            input_ids=ids, position_ids=positions, attention_mask=full_mask,
            **cache_argument(self.model, cache),
        ).logits.float()  # fmt: skip
        first = len(self.layout.lead) - 1  # the lead is given; code from the caption's first token
        log_probs = F.log_softmax(logits[:, first:-1], -1)
        targets = ids[:, first + 1 :]
        nats = -log_probs.gather(-1, targets[..., None])[..., 0] * mask[:, first + 1 :]
        return nats.sum() / math.log(2)

    def prefix(self, digest: bytes) -> LearnedPrefix:
        # rounded through fp16 here, so the prefix returned is the one a saved file gives back
        keys, values = (t.detach().to(torch.float16).to(torch.float32) for t in (self.keys, self.values))
        return LearnedPrefix(keys, values, digest.hex())


def _random_leading_space(text: str, rng: random.Random) -> str:
    """LLaVA's raw answers start with a space, stripped captions (stic's captioner) do not:
    training sees each caption both ways, at random."""
    body = text.lstrip(" ")
    return " " + body if rng.random() < 0.5 else body


def train_prefix(
    lm: LanguageModel, texts: Sequence[str], config: AdaptConfig = AdaptConfig(), progress: bool = True
) -> tuple[LearnedPrefix, AdaptReport]:
    """Train a prefix on `texts` (one caption each); report held-out bits/char before and after."""
    texts = [t for t in texts if t.strip()]
    if len(texts) < 2:
        raise InputError(f"need at least 2 non-empty captions to train a prefix, got {len(texts)}")
    if config.length < 1 or config.steps < 0 or config.batch_size < 1:
        raise InputError("prefix length and batch size must be >= 1, steps >= 0")
    rng = random.Random(config.seed)
    texts = rng.sample(texts, len(texts))
    n_val = max(1, round(len(texts) * config.validation))
    validation, train = texts[:n_val], texts[n_val:]
    torch.manual_seed(config.seed)
    model = lm.model
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with fixed_threads(config.threads):
            trainer = _PrefixTrainer(lm, config.length)
            chars = sum(len(t) for t in validation)

            def held_out() -> float:
                with torch.no_grad():
                    bits = sum(
                        float(trainer.bits(validation[i : i + config.batch_size]))
                        for i in range(0, len(validation), config.batch_size)
                    )
                return round(bits / chars, 4)

            curve = [(0, held_out())]
            params = [trainer.keys, trainer.values]
            optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, config.lr, total_steps=max(1, config.steps), pct_start=0.1
            )
            order: list[str] = []
            bar = tqdm(range(config.steps), desc="prefix tuning", unit="step", disable=not progress)
            for _ in bar:
                if len(order) < config.batch_size:
                    order += rng.sample(train, len(train))
                batch, order = order[: config.batch_size], order[config.batch_size :]
                batch = [_random_leading_space(t, rng) for t in batch]
                bits = trainer.bits(batch)
                (bits / sum(len(t) for t in batch)).backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad()
                schedule.step()
                bar.set_postfix(bits_per_char=f"{bits.item() / sum(len(t) for t in batch):.3f}")
            if config.steps:
                curve.append((config.steps, held_out()))
    finally:
        for p, flag in zip(model.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
    report = AdaptReport(len(train), len(validation), curve)
    return trainer.prefix(lm.digest()), report
