"""The `stic` command. Each subcommand group lives in its own module with `add_parser(subparsers)`;
heavy imports (torch, transformers) happen inside the handlers so `stic --help` stays instant.

Every expected failure is a SticError: printed as one line, exit status 1. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from stic import __version__, status
from stic.errors import InputError, SticError
from stic.paths import check_output


def _read_caption(args) -> str | None:
    if args.caption_file is None:
        return args.caption
    try:
        raw = Path(args.caption_file).read_bytes()
    except OSError as err:
        raise InputError(f"cannot read caption file {args.caption_file}: {err.strerror}") from err
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"caption file {args.caption_file} is not UTF-8 text ({err.reason} at byte {err.start})") from err


def _caption_for(args, image) -> tuple[str | None, dict]:
    """The caption to code (from --captioner, --caption-file or --caption), fitted to CLIP's
    77-token window, and what to report about it."""
    from stic.caption.registry import make_captioner

    given = [f"--{name.replace('_', '-')}" for name in ("captioner", "caption", "caption_file") if getattr(args, name) is not None]
    if len(given) > 1:
        raise InputError(f"give one of --captioner, --caption and --caption-file, not {' and '.join(given)}")
    precomputed = args.caption_file is not None and Path(args.caption_file).suffix.lower() in (".csv", ".json")
    text = args.caption if args.caption_file is None or precomputed else _read_caption(args)
    # the same VLM as captioner and caption coder: one copy, in the coder's float32 (unless --dtype)
    coder_model = args.text_coder.partition(":")[2] if args.text_coder.startswith(("vlm:", "vlm-xhat:")) else None
    dtype = args.dtype or ("float32" if args.captioner is not None and coder_model == args.captioner else None)
    captioner = make_captioner(
        model=args.captioner, text=text, file=args.caption_file if precomputed else None, prompt=args.caption_prompt,
        device=args.device, dtype=dtype,
    )  # fmt: skip
    if captioner is None:
        return None, {}
    fitted = captioner.caption(image, str(args.image))
    if fitted.truncated:
        warnings.warn(
            f"caption shortened from {fitted.original_clip_tokens} to {fitted.clip_tokens} CLIP tokens "
            "(the refiner's text encoder reads at most 75)",
            stacklevel=2,
        )
    return fitted.text, {"captioner": captioner.name, "caption_clip_tokens": fitted.clip_tokens,
                         "caption_clip_tokens_before_fitting": fitted.original_clip_tokens}  # fmt: skip


def _refiner_for(args):
    """The refiner named by --refiner (None: no refine section; AUTO: the default of whichever model
    codes the image), with the diffusion settings."""
    from stic.pipeline import AUTO
    from stic.refine.registry import get_refiner

    name = args.refiner
    if name is None:
        return AUTO
    if name in ("identity", "none"):
        return None

    settings = None
    if name.startswith("diffusion"):
        from stic.refine.diffusion import DiffusionSettings

        given = {"strength": args.strength, "guidance_scale": args.guidance, "steps": args.steps,
                 "negative_prompt": args.negative_prompt}  # fmt: skip
        settings = DiffusionSettings(**{k: v for k, v in given.items() if v is not None})
    return get_refiner(name, model=args.refiner_model, settings=settings, device=args.device, dtype=args.dtype)


def _text_coder_for(args):
    """The --text-coder name, or with --text-prefix the LM coder primed by that prefix."""
    if args.text_prefix is None:
        return args.text_coder
    from stic.text.registry import get_text_coder

    if args.text_coder.partition(":")[0] != "lm":
        raise InputError(f"--text-prefix is for the lm coder, not {args.text_coder!r}")
    return get_text_coder(args.text_coder, prefix=args.text_prefix)


def _summary(info: dict) -> str:
    parts = [f"{s['kind']} {s['bytes']} B" for s in info["sections"]]
    parts.append(f"header {info['header_overhead_bytes']} B")
    rate = f", {info['bpp']:.5f} bpp" if info["bpp"] is not None else ""
    return f"{info['file_bytes']} bytes{rate} ({', '.join(parts)})"


class _Parser(argparse.ArgumentParser):
    """Usage errors follow stic's convention: one `stic: error:` line and status 1 (argparse's
    own is a usage block and status 2)."""

    def error(self, message: str):
        print(f"stic: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(1)


def _number(kind: type, low: float, what: str):
    """An argparse type: a number of `kind` that is at least `low`."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= low:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{text} is below {low} ({what})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _shipped_quality_count(family: str | None) -> int:
    """How many shipped rate points a family has, read from the weights' JSON files (no torch)."""
    import json

    names = []
    for path in (Path(__file__).parent / "weights").glob("*.json"):
        config = json.loads(path.read_text())
        names.append(config.get("family", "mse"))
    return sum(1 for f in names if f == (family or "mse")) or len(names)


def _cmd_encode(args) -> None:
    if args.quality is not None and args.quality > (top := _shipped_quality_count(args.family)):
        raise InputError(f"--quality must be 1..{top} for the {args.family or 'mse'} family")
    if args.step and args.bpp is not None:
        raise InputError("--bpp picks the quantisation step itself: give --step with --quality or --model")
    out = check_output(Path(args.output) if args.output else Path(args.image).with_suffix(".stic"), args.force)
    with status.step("starting"):  # torch and the codecs' imports: ~2 s
        from stic.container import write_bytes_atomic
        from stic.fileinfo import describe
        from stic.image.io import read_image
        from stic.pipeline import SticPipeline

    image, original_size = read_image(args.image, max_side=args.max_side)
    caption, caption_info = _caption_for(args, image)
    parts = SticPipeline(text_coder=_text_coder_for(args), refiner=_refiner_for(args))
    encoded = parts.encode(
        image,
        quality=args.quality,
        bpp=args.bpp,
        model=args.model,
        caption=caption,
        seed=args.seed,
        family=args.family,
        search_steps=args.search_steps,
        progress=True,  # shown only while a search runs
        max_side=args.max_side,
        original_size=original_size,
        step=args.step,
        colour=not args.no_colour_map,
    )
    write_bytes_atomic(out, encoded.data)
    if args.bpp is not None and encoded.bpp < args.bpp / 2:
        print(f"stic: note: {encoded.image_model}, the highest-rate model, gives {encoded.bpp:.4f} bpp on this image even "
              f"at its finest quantisation step, far below the {args.bpp:g} bpp target", file=sys.stderr)
    info = describe(encoded.file)
    if args.json:
        print(json.dumps({"output": str(out), "image_model": encoded.image_model, **caption_info, **info}, indent=2))
    else:
        print(f"{out}: {_summary(info)}, model {encoded.image_model}")
        if caption is not None:
            print(f"caption ({caption_info['caption_clip_tokens']} CLIP tokens): {caption}")


def _cmd_decode(args) -> None:
    source = Path(args.input)
    # never the input's own PNG: decoding photo.stic next to photo.png must not replace the original
    out = check_output(Path(args.output) if args.output else source.with_suffix(".decoded.png"), args.force)
    if args.caption_output:
        check_output(Path(args.caption_output), args.force)
    with status.step("starting"):
        # The caption decodes on a second thread beside the image (stic.pipeline): OpenMP workers
        # spinning between the refiner's convolutions would take its core. Read when torch loads
        # OpenMP (the imports below), so set first; a user's own setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from stic.container import read_file, write_bytes_atomic
        from stic.image.io import save_png
        from stic.pipeline import decode_file

    file = read_file(source)
    decoded = decode_file(
        file,
        image_model=args.model,
        text_model=args.text_model,
        text_prefix=args.text_prefix,
        refine=not args.no_refine,
        refiner_model=args.refiner_model,
        original_size=not args.coded_size,
        device=args.device,
        dtype=args.dtype,
    )
    save_png(out, decoded.image)
    height, width = decoded.image.shape[:2]
    if decoded.caption is not None and args.caption_output:
        write_bytes_atomic(Path(args.caption_output), decoded.caption.encode("utf-8"))
    if args.json:
        report = {"output": str(out), "width": width, "height": height, "grey": decoded.presentation.grey,
                  "refiner": decoded.refiner, "caption": decoded.caption}  # fmt: skip
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    grey = ", grey" if decoded.presentation.grey else ""
    print(f"{out}: {width}x{height}{grey}" + (f", refined by {decoded.refiner}" if decoded.refiner else ""))
    if decoded.caption is not None:
        print(f"caption: {decoded.caption}")


def _cmd_info(args) -> None:
    from stic.container import read_file
    from stic.fileinfo import describe

    info = describe(read_file(args.file))
    if args.json:
        print(json.dumps({"file": args.file, **info}, indent=2))
        return
    size = f"{info['width']}x{info['height']}" if info["width"] else "caption only"
    if info["original_size"]:
        size += " (shrunk from {}x{})".format(*info["original_size"])
    if info["grey"]:
        size += ", grey"
    print(f"{args.file}: {size}, {_summary(info)}")
    for s in info["sections"]:
        bpp = f", {s['bpp']:.5f} bpp" if s["bpp"] is not None else ""
        model = f", model {s['model'] or s['fingerprint']}" if s["fingerprint"] else ""
        print(f"  {s['kind']:<8} codec {s['codec']:<18} {s['bytes']:>7} B = {s['bits']:>8} bits{bpp}{model}")
    print(f"  header   {info['header_overhead_bytes']:>33} B = {8 * info['header_overhead_bytes']:>8} bits")


def _add_placement(parser: argparse.ArgumentParser, what: str) -> None:
    """--device and --dtype: where the large float models run (stic.placement; the exact coders
    always run on the CPU)."""
    parser.add_argument("--device", help=f"where {what} runs: cpu, cuda or cuda:N (default: cuda if a GPU is visible)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                        help=f"precision of {what} (default: bfloat16 on a GPU; on the CPU float32 for diffusion, "
                        "bfloat16 for a captioner)")


def build_parser() -> argparse.ArgumentParser:
    from stic.eval.cli import add_parser as add_eval
    from stic.serve.cli import add_parser as add_serve
    from stic.text.cli import add_parser as add_text
    from stic.train.cli import add_parser as add_train

    parser = _Parser(
        prog="stic", description="Semantic text-image coding at ultra-low bitrates."
    )
    parser.add_argument("--version", action="version", version=f"stic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encode", help="compress an image (and a caption) into a .stic file")
    enc.add_argument("image", help="PNG, JPEG, WebP, TIFF or BMP")
    enc.add_argument("-o", "--output", help="output .stic (default: IMAGE with .stic suffix)")
    enc.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    rate = enc.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=_number(float, 1e-9, "a positive rate"),
                      help="largest model whose real file is <= this many bits per pixel")
    rate.add_argument("--quality", type=_number(int, 1, "rate points start at 1"),
                      help="shipped rate point, 1 = lowest rate (1..3 per family)")
    rate.add_argument("--model", help="image model: a shipped name or a local model directory")
    enc.add_argument("--step", type=_number(int, 0, "0 is the model's own step"), default=0, metavar="S",
                     help="with --quality or --model: quantise the latents finer, 0..48 (each step ~5 %% more image "
                     "bits, for rates between and above the shipped models'; --bpp picks it itself) (default: 0)")
    enc.add_argument("--max-side", type=_number(int, 16, "at least 16 pixels"), metavar="N",
                     help="shrink a larger photo (Lanczos) so its longer side is N pixels before coding; the file "
                     "records the original size, which decoding restores (also lets photos above 16.8 MP in)")
    enc.add_argument("--no-colour-map", action="store_true",
                     help="leave out the colour map (19 bytes) that brings the decoded colours back towards the "
                     "original's; by default it is fitted and written")
    enc.add_argument("--family", help="model family --quality/--bpp choose from: mse (default) or perceptual "
                     "(decoders fine-tuned for LPIPS; docs/training.md); twins share encoder and rates")
    enc.add_argument(
        "--search-steps", type=_number(int, 0, "0 turns the search off"), default=0, metavar="N",
        help="optimise the image latents for this image with N gradient steps before coding, by the model's "
        "own training loss (rate + MSE, + LPIPS for the perceptual family): a better file for the same decoder, "
        "~0.5 s per step for 768x512 (0.8 s perceptual); with --bpp the model is the one without search and "
        "its searched file stays within the target (default: 0, off; 100 is a good choice)",
    )
    enc.add_argument("--captioner", metavar="MODEL", help="caption the image with this vision-language model (id or local directory)")
    enc.add_argument("--caption-prompt", help="prompt for --captioner (default: a short description of at most ~50 words)")
    enc.add_argument("--caption", help="caption text to code with the image")
    enc.add_argument(
        "--caption-file",
        help="a UTF-8 text file holding the caption, or a .csv/.json of image name -> caption (looked up by IMAGE's name)",
    )
    enc.add_argument(
        "--text-coder",
        default="lm",
        help="caption coder, e.g. lm, lm:gemma3-270m, zlib, vlm:MODEL, vlm-xhat:MODEL (the VLM also sees the decoded image) (default: lm)",
    )
    enc.add_argument("--text-prefix", help="learned prefix for the lm coder, made by `stic text adapt` (default: the shipped one)")
    enc.add_argument(
        "--refiner",
        help="refiner the decoder applies: realesrgan-stic (default for stic-q1 and stic-q3: a compact network trained "
        "on stic's own output, ~0.5 s for 768x512 on 2 cores; the perceptual models default to none), realesrgan-stic-q2 "
        "(the same network tuned on stic-q2's output: stic-q2's default), realesrgan-compact "
        "(Real-ESRGAN animevideov3), realesrgan (x4plus, ~25x the compute), diffusion[:MODEL], none",
    )
    enc.add_argument("--refiner-model", help="diffusion model id or local directory (default: $STIC_DIFFUSION_MODEL or SD 1.5)")
    enc.add_argument("--seed", type=_number(int, 0, "seeds are 0..2^48-1"), default=0,
                     help="refiner seed stored in the file, 0..2^48-1 (default: 0)")
    enc.add_argument("--strength", type=float, help="diffusion: how much of x̂ is repainted, 0-1 (docs/refiners.md has the defaults)")
    enc.add_argument("--guidance", type=float, help="diffusion: classifier-free guidance scale")
    enc.add_argument("--steps", type=int, help="diffusion: denoising steps")
    enc.add_argument("--negative-prompt", help="diffusion: negative prompt (default: none)")
    _add_placement(enc, "the captioner and a diffusion refiner (its fingerprint)")
    enc.add_argument("--json", action="store_true", help="print the result as JSON")
    enc.set_defaults(func=_cmd_encode)

    dec = sub.add_parser("decode", help="decompress a .stic file to PNG")
    dec.add_argument("input", help="the .stic file")
    dec.add_argument("-o", "--output", help="output PNG (default: INPUT with .decoded.png suffix)")
    dec.add_argument("--force", action="store_true", help="overwrite the outputs if they exist")
    dec.add_argument("--json", action="store_true", help="print what was written as JSON")
    dec.add_argument("--caption-output", help="also write the decoded caption to this file")
    dec.add_argument("--model", help="the image model that made the file when it is not a shipped one: "
                     "a model folder or compressai:ARCH:QUALITY")
    dec.add_argument("--text-model", help="caption LM (or VLM) to use when the file names a custom model")
    dec.add_argument("--text-prefix", help="the learned prefix the caption was coded with, if not the shipped one")
    dec.add_argument("--no-refine", action="store_true", help="output x̂ as decoded (with the file's colour map), ignoring the file's refiner")
    dec.add_argument("--coded-size", action="store_true",
                     help="for a file coded with --max-side: output the coded (shrunk) size, not the original")
    dec.add_argument("--refiner-model", help="diffusion model for a diffusion-refined file (id or local directory)")
    _add_placement(dec, "a diffusion refiner")
    dec.set_defaults(func=_cmd_decode)

    info = sub.add_parser("info", help="show a .stic file's sections, sizes, models and bpp")
    info.add_argument("file", help="the .stic file")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=_cmd_info)

    add_text(sub)
    add_train(sub)
    add_eval(sub)
    add_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status.enable(sys.stderr.isatty())  # a line per slow step on a terminal; silent into files and pipes
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        # CompressAI's import-time use of torch.jit.script: not the user's concern
        warnings.filterwarnings("ignore", message=".*torch.jit.script", category=FutureWarning)
        warnings.showwarning = lambda message, *_, **__: print(f"stic: warning: {message}", file=sys.stderr)
        try:
            args.func(args)
        except SticError as err:
            print(f"stic: error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stic: interrupted", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
