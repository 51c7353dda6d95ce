"""`stic text encode|decode|bench|adapt`: code a caption on its own, compare caption coders,
and train a learned prefix for the caption LM.

A caption-only .stic file is an ordinary .stic file (width = height = 0) holding one caption
section, so `stic info` describes it and the same fingerprint checks guard its decoding.
Texts are coded exactly as given: a trailing newline from `echo ... |` is part of the text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stic.errors import FormatError, InputError


def _read_text(source: str) -> str:
    raw = sys.stdin.buffer.read() if source == "-" else source.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        where = "standard input" if source == "-" else "the text argument"
        raise InputError(f"{where} is not UTF-8 text ({err.reason} at byte {err.start})") from err


def _coder_name(args) -> str:
    if args.model is None:
        return args.coder
    method, _, model = args.coder.partition(":")
    if model and model != args.model:
        raise InputError(f"--coder {args.coder} and --model {args.model} name different models")
    return f"{method}:{args.model}"


def _cmd_encode(args) -> None:
    from stic.container import SECTION_CAPTION, Section, write_file
    from stic.paths import check_output
    from stic.text.registry import get_text_coder

    check_output(Path(args.output), args.force)
    text = _read_text(args.text)
    name = _coder_name(args)
    if args.prefix is not None and not name.startswith("lm"):
        raise InputError(f"--prefix is for the lm coder, not {args.coder!r}")
    coder = get_text_coder(name, **({} if args.prefix is None else {"prefix": args.prefix}))
    payload = coder.encode(text)
    written = write_file(args.output, 0, 0, [Section(SECTION_CAPTION, coder.codec_id, payload, coder.fingerprint())])
    per_char = f", {8 * len(payload) / len(text):.3f} bits/char" if text else ""
    print(
        f"{args.output}: {written.size} bytes (caption {len(payload)} B = {8 * len(payload)} bits{per_char}, "
        f"header {written.overhead_bytes} B), coder {coder.name}"
    )


def _cmd_decode(args) -> None:
    from stic.container import SECTION_CAPTION, read_file, write_bytes_atomic
    from stic.paths import check_output
    from stic.text.registry import text_coder_for_section

    if args.output:
        check_output(Path(args.output), args.force)
    file = read_file(args.file)
    section = file.section(SECTION_CAPTION)
    if section is None:
        raise FormatError(f"{args.file} holds no caption section")
    coder = text_coder_for_section(
        section.codec_id, section.fingerprint, model=args.model, prefix=args.prefix
    )
    if getattr(coder, "needs_image", False):
        raise FormatError(f"the caption in {args.file} was coded seeing the decoded image: decode the file with stic decode")
    text = coder.decode(section.payload)
    if args.output:
        write_bytes_atomic(Path(args.output), text.encode("utf-8"))
        return
    sys.stdout.buffer.write(text.encode("utf-8") + (b"\n" if sys.stdout.isatty() else b""))
    sys.stdout.flush()


def _cmd_bench(args) -> None:
    from stic.container import write_bytes_atomic
    from stic.text.bench import DEFAULT_METHODS, format_table, read_texts, run_bench

    texts = read_texts(args.csv, args.column)
    if args.limit is not None:
        texts = texts[: args.limit]
    results = run_bench(texts, args.methods or DEFAULT_METHODS, show_progress=not args.no_progress)
    print(format_table(results))
    if args.json:
        report = {"csv": str(args.csv), "column": args.column, "results": results}
        write_bytes_atomic(Path(args.json), (json.dumps(report, indent=2) + "\n").encode())
        print(f"wrote {args.json}")


def _read_corpus(paths: list[str], column: str | None) -> list[str]:
    from stic.text.bench import read_texts

    texts: list[str] = []
    for path in paths:
        if Path(path).suffix.lower() == ".csv":
            if column is None:
                raise InputError(f"{path}: give --column to read captions from a CSV file")
            texts += read_texts(path, column)
            continue
        try:
            texts += [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as err:
            raise InputError(f"cannot read {path}: {err.strerror or err}") from err
        except UnicodeDecodeError as err:
            raise InputError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    return texts


def _cmd_adapt(args) -> None:
    from stic.text.adapt import AdaptConfig, train_prefix
    from stic.text.lm import load_lm
    from stic.text.registry import default_model

    texts = _read_corpus(args.corpus, args.column)
    # trained by gradient through the float model; the prefix is bound to the model's identity,
    # so the exact engine codes with it
    lm = load_lm(args.model or default_model(), engine="transformers")
    config = AdaptConfig(
        length=args.length, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, threads=args.threads,
    )  # fmt: skip
    prefix, report = train_prefix(lm, texts, config)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    prefix.save(Path(args.output))
    curve = ", ".join(f"step {step}: {bpc:.4f}" for step, bpc in report.validation_bits_per_char)
    print(
        f"{args.output}: prefix of {prefix.length} positions for {lm.name}; trained on "
        f"{report.train_texts} captions; held-out {report.validation_texts}: bits/char {curve}"
    )


def add_parser(subparsers) -> None:
    text = subparsers.add_parser("text", help="code a caption on its own; compare caption coders")
    sub = text.add_subparsers(dest="text_command", required=True)
    coder_help = (
        "caption coder: raw, zlib, bz2, lzma, brotli, zstd, zstd-dict, rank-zlib[:MODEL], lm[:MODEL] "
        "(exact engine: decodes on every machine), lm-float[:MODEL] (machine-bound)"
    )
    model_help = "language model for lm / rank-zlib: smollm2-135m, gemma3-270m, a .gguf file or a model directory"

    enc = sub.add_parser("encode", help="code a text into a caption-only .stic file")
    enc.add_argument("text", help="the text, or - to read UTF-8 from standard input")
    enc.add_argument("-o", "--output", required=True, help="output .stic file")
    enc.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    enc.add_argument("--coder", default="lm", help=f"{coder_help} (default: lm)")
    enc.add_argument("--model", help=model_help)
    prefix_help = "a learned prefix made by `stic text adapt` (lm coder; default: the one stic ships for the model)"
    enc.add_argument("--prefix", help=prefix_help)
    enc.set_defaults(func=_cmd_encode)

    dec = sub.add_parser("decode", help="decode the caption of a .stic file")
    dec.add_argument("file", help="a caption .stic file (made by stic text encode)")
    dec.add_argument("-o", "--output", help="write the text here (UTF-8) instead of standard output")
    dec.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    dec.add_argument("--model", help=f"{model_help}; default: the one the file names")
    dec.add_argument("--prefix", help="the learned prefix the caption was coded with, if not the shipped one")
    dec.set_defaults(func=_cmd_decode)

    bench = sub.add_parser("bench", help="compare caption coders on a CSV column of texts")
    bench.add_argument("csv", help="a CSV of captions (one per row)")
    bench.add_argument("--column", required=True, help="the CSV column holding the texts")
    bench.add_argument("--methods", nargs="+", metavar="NAME", help=f"{coder_help} (default: all)")
    bench.add_argument("--json", help="also write the full results (per text too) as JSON here")
    bench.add_argument("--limit", type=int, help="only the first N texts")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(func=_cmd_bench)

    adapt = sub.add_parser(
        "adapt", help="train a learned prefix (prefix tuning) for the caption LM on example captions"
    )
    adapt.add_argument("corpus", nargs="+", help="caption files: .txt (one per line) or .csv (with --column)")
    adapt.add_argument("--column", help="the CSV column holding the captions")
    adapt.add_argument("-o", "--output", required=True, help="prefix file to write (.safetensors)")
    adapt.add_argument("--model", help=model_help)
    adapt.add_argument("--length", type=int, default=32, help="prefix positions (default: 32)")
    adapt.add_argument("--steps", type=int, default=150, help="optimiser steps (default: 150)")
    adapt.add_argument("--batch-size", type=int, default=8, help="captions per step (default: 8)")
    adapt.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: 3e-3)")
    adapt.add_argument("--seed", type=int, default=0, help="random seed of the prefix's initialisation and batches")
    adapt.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    adapt.set_defaults(func=_cmd_adapt)
