"""Image (+ caption) to .stic bytes and back: the one place where the parts meet.

Rate control is by measurement, never by guess: `bpp=` encodes with each shipped model from the
highest rate down and keeps the first whose whole file (header and caption included) fits; where
that leaves more than a tenth of the target unused, or no model fits, a model codes the picture
shrunk to the largest size that fits (the decoder scales it back).
Decoding resolves every model a file names before decoding anything, so a file made with other
models is refused up front. A refine section, if any, names the refiner the decoder then applies to
x̂ (with the caption and the stored seed). A caption coded by a VLM that saw x̂ is coded after the
image, per candidate image model, since x̂ depends on it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass, replace

import numpy as np

from stic import __version__, codecs
from stic.colour import ColourMap, placeholder_section
from stic.container import (
    SECTION_CAPTION,
    SECTION_COLOUR,
    SECTION_IMAGE,
    SECTION_PICTURE,
    SECTION_REFINE,
    Section,
    SticFile,
    pack,
    unpack,
)
from stic.errors import FormatError, InputError
from stic.image.io import MAX_PIXELS, MAX_SIDE, fit_to_side, size_problem
from stic.image.protocol import ImageCodec
from stic.image.registry import (
    all_shipped_models,
    check_family,
    decoder_for_fingerprint,
    default_family,
    load_image_codec,
    model_family,
    recommended_refiner,
    shipped_models,
)
from stic.picture import Presentation, is_grey, presented_size
from stic.refine.protocol import Refiner
from stic.status import step as status_step
from stic.text.protocol import TextCoder
from stic.text.registry import deferred_coder_for_section, get_text_coder, text_coder_for_section
from stic.threads import cores_busy_elsewhere, fixed_threads

DEFAULT_TEXT_CODER = "lm"
#: the refiner `stic encode` writes unless told otherwise, per image-model family: the compact
#: network fine-tuned on stic's own x̂ lowers LPIPS-Alex by 0.19-0.29 and DISTS by 0.09-0.16 on Kodak
#: at all three MSE rate points (results/refine_kodak_stic.md); the dotted texture it painted over smooth
#: areas at stic-q1's rate is taken out by its grid filter (stic.refine.degrid, docs/quality.md); the
#: perceptual decoders' own texture is undone by a refiner (results/refine_kodak_compact_perceptual.md)
DEFAULT_REFINERS = {"mse": "realesrgan-stic", "perceptual": "identity"}
#: `encode(refiner=AUTO)`: the default refiner of whichever model codes the image
AUTO = "auto"


@dataclass
class Encoded:
    data: bytes
    file: SticFile
    image_model: str
    caption: str | None

    @property
    def bpp(self) -> float:
        """Bits per pixel of the picture the file decodes to (its original size if it was shrunk)."""
        width, height = presented_size(self.file)
        return 8 * len(self.data) / (width * height)


@dataclass
class Decoded:
    image: np.ndarray
    caption: str | None
    file: SticFile
    refiner: str | None = None  # name of the refiner applied, None when x̂ is returned as is
    #: grey (then `image` is HxW) and the original size (`image` has it unless original_size=False)
    presentation: Presentation = Presentation()


def default_quality(family: str | None = None) -> int:
    """The middle shipped rate point: a balanced default (1 = lowest rate)."""
    return (len(shipped_models(family)) + 1) // 2


def default_refiner(model: str | None = None, family: str | None = None) -> str:
    """The refiner to write for a shipped `model` (its JSON's choice, else its family's), or for a
    family's ladder; models from outside the package get the MSE models' refiner."""
    if model is not None:
        if model not in all_shipped_models():
            return DEFAULT_REFINERS["mse"]
        return recommended_refiner(model) or DEFAULT_REFINERS[model_family(model)]
    return DEFAULT_REFINERS[check_family(family or default_family())]


def _image_codec_for_quality(quality: int, family: str | None) -> ImageCodec:
    names = shipped_models(family)
    if not 1 <= quality <= len(names):
        raise InputError(f"quality must be 1..{len(names)} (shipped models: {', '.join(names)})")
    return load_image_codec(names[quality - 1])


class _CaptionSection:
    """Codes the caption once, or once per image payload when the coder needs the decoded image
    (`needs_image`: it predicts the caption seeing x̂). `start()` codes it, on a second thread
    while the image is coded where the coder's bytes cannot depend on threads
    (`thread_independent`; see `_Beside`)."""

    def __init__(self, caption: str | None, text_coder: str | TextCoder):
        self.caption = caption
        self._coder = None
        self._fixed: Section | None = None
        self._beside: _Beside | None = None
        self._started = False
        if caption is not None:
            with status_step("loading the caption model"):
                self._coder = get_text_coder(text_coder) if isinstance(text_coder, str) else text_coder

    def start(self) -> None:
        """Code the caption now, or begin to beside the image, once everything else is checked."""
        if self._started or self._coder is None or getattr(self._coder, "needs_image", False):
            return
        self._started = True
        if _beside_the_image(self._coder):
            self._beside = _Beside(lambda: self._section(self._coder), "stic-caption-encode")
        else:
            with status_step("coding the caption"):
                self._fixed = self._section(self._coder)

    def _section(self, coder: TextCoder) -> Section:
        return Section(SECTION_CAPTION, coder.codec_id, coder.encode(self.caption), coder.fingerprint())

    def for_image(self, codec: ImageCodec, codec_id: int, payload: bytes, width: int, height: int) -> Section | None:
        self.start()
        if self._beside is not None:
            self._fixed, self._beside = self._beside.result("coding the caption"), None
        if self._fixed is not None or self._coder is None:
            return self._fixed
        xhat = codec.decompress(payload, width, height, codec_id)  # exactly the decoder's x̂
        return self._section(self._coder.given_image(xhat))


#: a rate cap leaves this share of the image's bit budget unused: the search's rate is an estimate
#: (within ~3 % of the coded bits on small images, closer on large ones, once the coder's fixed
#: per-string cost, measured on the plain file, is set aside too)
CAP_MARGIN = 0.97


def _pack_with(
    codec: ImageCodec, payload: bytes, image: np.ndarray, caption: _CaptionSection, refine_section: Section | None,
    picture_section: Section | None, step: int = 0, colour: Section | bool | None = None,
) -> bytes:
    """The file; `colour` True fits the colour map on x̂ (one more image decode), a Section is
    written as is (`--bpp`'s placeholder), None writes none."""
    height, width = image.shape[:2]
    codec_id = codec.codec_id_for(step)
    sections = [Section(SECTION_IMAGE, codec_id, payload, codec.fingerprint())]
    caption_section = caption.for_image(codec, codec_id, payload, width, height)
    if colour is True:
        with status_step("fitting the colour map"):
            fitted = ColourMap.fit(codec.decompress(payload, width, height, codec_id), image)
        colour = fitted.section() if fitted is not None else None
    sections += [s for s in (caption_section, refine_section, picture_section, colour) if s is not None]
    return pack(width, height, sections)


def encode(
    image: np.ndarray,
    *,
    quality: int | None = None,
    bpp: float | None = None,
    model: str | ImageCodec | None = None,
    caption: str | None = None,
    text_coder: str | TextCoder = DEFAULT_TEXT_CODER,
    refiner: str | Refiner | None = AUTO,
    seed: int = 0,
    family: str | None = None,
    search_steps: int = 0,
    progress: bool = False,
    max_side: int | None = None,
    original_size: tuple[int, int] | None = None,
    step: int = 0,
    colour: bool = True,
) -> Encoded:
    """Code an HxWx3 uint8 RGB image (and optionally a caption) into .stic bytes.

    Pick the image model by `model` (a shipped name, a local directory or a loaded codec), by `quality`
    (1 = lowest shipped rate), or by `bpp` (the largest model whose real file fits the target);
    `quality` and `bpp` choose within a model `family` ("mse" or "perceptual"; default: the
    registry's default family).
    `text_coder` may also be "vlm:MODEL" or "vlm-xhat:MODEL" (a VLM codes the caption, the latter
    seeing x̂). `refiner` (a name, a Refiner, None for no refinement, or AUTO — the default, as in
    `stic encode` — for the chosen model's own choice) and `seed` are written for the decoder to
    apply. `search_steps` > 0 optimises the image latents for this image before coding (slower encoding, same decoder; docs/latent_search.md); `progress` shows
    a progress bar for it. `max_side` shrinks a larger image (Lanczos) to that longer side before
    coding; the file records the original size, which decoding restores (`original_size`: the
    (width, height) of the photo `image` was already shrunk from, as `stic.image.io.read_image`
    gives it). A grey image (three equal channels) is recorded as grey and decodes grey.
    `step` (0..48, with `quality` or `model`) quantises the latents finer than the model was
    trained to, for rates between and above the shipped models' (each step ~5 % more image bits;
    `bpp` picks it itself). `colour` writes the colour map that brings x̂'s colours back towards the
    original's (stic.colour; 19 bytes).
    """
    if sum(option is not None for option in (quality, bpp, model)) > 1:
        raise InputError("give at most one of quality, bpp and model")
    if step and bpp is not None:
        raise InputError("bpp picks the quantisation step itself: give step with quality or model")
    if search_steps < 0:
        raise InputError(f"search_steps must be >= 0, got {search_steps}")
    _check_image(image, shrinking=max_side is not None)
    original = tuple(original_size or (image.shape[1], image.shape[0]))
    source = _Source(fit_to_side(image, max_side), original, is_grey(image))
    _check_image(source.image)
    image, picture = source.at_side(None)
    caption_section = _CaptionSection(caption, text_coder)
    refine = _RefineSection(refiner, seed)
    if bpp is not None:
        return _encode_to_target(source, bpp, caption_section, refine, family, search_steps, progress, colour)
    with status_step("loading the image model"):
        if model is not None:
            codec = load_image_codec(model) if isinstance(model, str) else model
        else:
            codec = _image_codec_for_quality(quality or default_quality(family), family)
    caption_section.start()
    with status_step("coding the image"):
        payload = codec.compress(image, search_steps, progress, step=step)
    data = _pack_with(codec, payload, image, caption_section, refine.for_model(codec.name), picture, step, colour or None)
    return Encoded(data, unpack(data), codec.name, caption)


class _RefineSection:
    """The refine section for the model that ends up coding the image (AUTO: that model's default).
    A named refiner is built once, up front (a bad name fails before any coding); AUTO's sections
    are built once per refiner name, however many models `--bpp` tries."""

    def __init__(self, refiner: str | Refiner | None, seed: int):
        self.seed = seed
        self.auto = isinstance(refiner, str) and refiner == AUTO
        self._by_name: dict[str, Section | None] = {}
        self._fixed = None if self.auto else self._build(refiner)

    def for_model(self, model: str) -> Section | None:
        if not self.auto:
            return self._fixed
        name = default_refiner(model)
        if name not in self._by_name:
            self._by_name[name] = self._build(name)
        return self._by_name[name]

    def _build(self, refiner: str | Refiner | None) -> Section | None:
        if refiner is None:
            return None
        from stic.refine.registry import get_refiner, refine_section

        return refine_section(get_refiner(refiner) if isinstance(refiner, str) else refiner, self.seed)


@dataclass
class _Source:
    """The image to code (after any max_side) and the size it is presented at (its original)."""

    image: np.ndarray
    original: tuple[int, int]
    grey: bool  #: three equal channels: the file says so and decodes grey

    @property
    def pixels(self) -> int:
        return self.original[0] * self.original[1]

    @property
    def side(self) -> int:
        return max(self.image.shape[:2])

    def at_side(self, side: int | None) -> tuple[np.ndarray, Section | None]:
        """The image shrunk to `side` (None: as is) and the picture section that presents it."""
        image = fit_to_side(self.image, side)
        shrunk = (image.shape[1], image.shape[0]) != self.original
        return image, Presentation(grey=self.grey, original=self.original if shrunk else None).section()


@dataclass
class _Attempt:
    codec: ImageCodec
    image: np.ndarray
    payload: bytes
    data: bytes
    picture: Section | None
    step: int = 0
    side: int | None = None  #: the longer side the picture was shrunk to (None: as given)


#: `--bpp T` aims for a file in [TARGET_FLOOR * T, T]; the ladder's models alone leave gaps
TARGET_FLOOR = 0.9
#: below the lowest model's rate the picture is shrunk down to this fraction of its sides (1/16 of
#: its pixels); between two models the upper one only down to BETWEEN_SCALE: on Kodak (4 images,
#: stic's refiner) stic-q3 at 0.8 of each side beat stic-q2 at full size (LPIPS-Alex 0.355 vs
#: 0.367, DISTS 0.184 vs 0.195, at 1.8x its bits), at 0.7 it lost (0.403 / 0.208)
MIN_SCALE = 0.25
BETWEEN_SCALE = 0.8


def _encode_to_target(
    source: _Source, target: float, caption: _CaptionSection, refine: _RefineSection, family: str | None,
    search_steps: int, progress: bool, colour: bool,
) -> Encoded:
    """The file with the most bits within the target, by measurement: each model of the ladder at
    full size, highest first; where the first that fits leaves more than a tenth of the target
    unused, the model above it on the picture shrunk (largest side that fits, by bisection, down to
    BETWEEN_SCALE); below the lowest model's rate, that model shrunk down to MIN_SCALE; and where
    the file chosen still leaves a tenth unused, the same model and size with a finer quantisation
    step (the finest that fits, by bisection). The decoder scales the picture back. With search,
    the chosen file's latents are then searched under a rate cap that keeps the whole file within
    the target (the plain file if the searched one should still not fit). Candidates carry a
    placeholder colour section of the fitted one's size; only the file kept gets the fitted map, and
    where no file fits with it, the files are made without it."""
    if target <= 0:
        raise InputError(f"target bpp must be positive, got {target}")
    caption.start()
    budget = target * source.pixels  # bits
    achieved: dict[str, float] = {}
    placeholder = placeholder_section() if colour else None

    def attempt(name: str, side: int | None = None, quantisation: int = 0) -> _Attempt:
        detail = (f" at {side} px" if side else "") + (f", step {quantisation}" if quantisation else "")
        with status_step(f"coding the image with {name}{detail}"):
            codec = load_image_codec(name)
            image, picture = source.at_side(side)
            payload = codec.compress(image, step=quantisation)
            data = _pack_with(
                codec, payload, image, caption, refine.for_model(codec.name), picture, quantisation, placeholder
            )
        return _Attempt(codec, image, payload, data, picture, quantisation, side)

    def largest_fitting(values: range, make) -> _Attempt | None:
        """Bisection over `values` (a file's size grows with the value) for the largest whose file
        fits, stopping once it uses at least TARGET_FLOOR of the budget."""
        low, high, best = values.start, values.stop - 1, None
        while low <= high:
            value = (low + high + 1) // 2 if best else low  # first check that the smallest fits at all
            result = make(value)
            if 8 * len(result.data) > budget:
                high = value - 1
                if best is None:
                    return None
                continue
            best, low = result, value + 1
            if 8 * len(result.data) >= TARGET_FLOOR * budget:
                break
        return best

    def shrunk_to_fit(name: str, min_scale: float) -> _Attempt | None:
        """The largest side (down to `min_scale` of the picture's) at which `name`'s file fits."""
        return largest_fitting(range(max(16, round(min_scale * source.side)), source.side), lambda side: attempt(name, side))

    def finer_to_fit(fitting: _Attempt) -> _Attempt:
        """`fitting` (model and size) with the finest quantisation step whose file fits (on Kodak,
        a model shrunk looks better than the model below it quantised finer at the same rate, so
        the step comes last)."""
        steps = range(1, fitting.codec.max_step + 1)
        return largest_fitting(steps, lambda s: attempt(fitting.codec.name, fitting.side, s)) or fitting

    def better(*results: _Attempt | None) -> _Attempt:
        return max((r for r in results if r is not None), key=lambda r: len(r.data))

    ladder = list(reversed(shipped_models(family)))  # highest rate first

    def on_the_ladder() -> _Attempt | None:
        for index, name in enumerate(ladder):
            result = attempt(name)
            achieved[name] = 8 * len(result.data) / source.pixels
            if 8 * len(result.data) > budget:
                continue
            if index > 0 and 8 * len(result.data) < TARGET_FLOOR * budget:
                return better(result, shrunk_to_fit(ladder[index - 1], BETWEEN_SCALE))
            return result
        return shrunk_to_fit(ladder[-1], MIN_SCALE)

    chosen = on_the_ladder()
    if chosen is None and placeholder is not None:  # the colour map's bytes are what does not fit
        placeholder, colour = None, False
        chosen = on_the_ladder()
    if chosen is not None and 8 * len(chosen.data) < TARGET_FLOOR * budget:
        chosen = better(chosen, finer_to_fit(chosen))
    if chosen is None:
        tried = ", ".join(f"{name} {rate:.4f}" for name, rate in achieved.items())
        raise InputError(
            f"no model reaches {target} bpp on this {source.original[0]}x{source.original[1]} image, even shrunk "
            f"to {MIN_SCALE:g} of its size (measured bpp at full size: {tried}); raise the target"
            + (" or drop the caption" if caption.caption is not None else "")
        )
    codec, image, payload, step, data = chosen.codec, chosen.image, chosen.payload, chosen.step, chosen.data
    if search_steps:
        # the coder's fixed cost over the estimate (rANS flushes, byte padding: ~200 bits for
        # the checkerboard models' three strings) weighs up to ~6 % on a small image's budget; measured
        # at the model's own step, the one the search codes with
        plain = chosen.payload if chosen.step == 0 else codec.compress(image)
        fixed = max(0.0, 8 * len(plain) - codec.estimate_bits(image))
        cap_bits = CAP_MARGIN * (budget - 8 * (len(chosen.data) - len(chosen.payload)) - fixed)
        searched = codec.compress(image, search_steps, progress, max_bpp=cap_bits / (image.shape[0] * image.shape[1]))
        searched_data = _pack_with(
            codec, searched, image, caption, refine.for_model(codec.name), chosen.picture, 0, placeholder
        )
        if 8 * len(searched_data) <= budget:  # the search codes at the model's own step
            payload, step, data = searched, 0, searched_data
    if colour:  # the fitted map in place of the placeholder: the same size, or none
        data = _pack_with(codec, payload, image, caption, refine.for_model(codec.name), chosen.picture, step, True)
    return Encoded(data, unpack(data), codec.name, caption.caption)


def _check_image(image: np.ndarray, shrinking: bool = False) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise InputError("image must be an HxWx3 uint8 RGB array (use stic.load_image for files)")
    problem = size_problem(image.shape[1], image.shape[0], shrinking)
    if problem:
        raise InputError(f"image {problem}")


def resolve_models(
    file: SticFile, text_model: str | None = None, text_prefix: str | None = None, held: SticPipeline | None = None
) -> tuple[ImageCodec | None, TextCoder | None]:
    """Find the codecs a file needs, or raise ModelMismatchError/ModelNotFoundError naming them.
    A text coder that `needs_image` is checked here and given x̂ by `decode_file`. An exact-LM
    caption whose model this machine's fingerprint table names gets a coder that loads the model
    when it decodes (stic.text.registry.deferred_coder_for_section): beside the image, so that a
    cold decode loads the LM while x̂ is decoded.
    `text_prefix`: the learned-prefix file the caption was coded with, if not the shipped one;
    `held`: a pipeline whose parts are used wherever a section names them (the same codec id and
    fingerprint), before any registry is asked."""
    for section in file.sections:
        if section.kind == SECTION_IMAGE and section.codec_id not in codecs.IMAGE_CODEC_NAMES:
            raise FormatError(f"image section uses unknown codec id {section.codec_id} (written by a newer stic than {__version__}?)")
        if section.kind == SECTION_IMAGE and not section.fingerprint:
            raise FormatError("corrupt file: the image section names no model (no fingerprint)")
    image_section = file.section(SECTION_IMAGE)
    caption_section = file.section(SECTION_CAPTION)
    extra = [held.image_codec] if held is not None and held.image_codec is not None else []
    image_codec = decoder_for_fingerprint(image_section.fingerprint, extra) if image_section else None
    if caption_section is None:
        return image_codec, None
    coder = held.text_coder if held is not None else None
    if coder is not None and not isinstance(coder, str) and (coder.codec_id, coder.fingerprint()) == (
        caption_section.codec_id, caption_section.fingerprint
    ):
        return image_codec, coder
    if text_model is None and text_prefix is None:
        deferred = deferred_coder_for_section(caption_section.codec_id, caption_section.fingerprint)
        if deferred is not None:
            return image_codec, deferred
    text_coder = text_coder_for_section(
        caption_section.codec_id, caption_section.fingerprint, model=text_model, prefix=text_prefix
    )
    return image_codec, text_coder


def decode(
    data: bytes,
    *,
    text_model: str | None = None,
    text_prefix: str | None = None,
    refine: bool = True,
    refiner_model: str | None = None,
    original_size: bool = True,
    device: str | None = None,
    dtype: str | None = None,
    image_model: str | None = None,
) -> Decoded:
    """Decode .stic bytes to the image and the caption, if any; the refiner the file names is
    applied unless `refine` is False (then x̂ is returned, with the file's colour map applied). The image is HxWx3 RGB, or HxW for a
    file coded from a grey image, at the size it had before encoding shrank it (`original_size`
    False: at the coded size). `device` and `dtype` place a diffusion refiner (stic.placement);
    `image_model` names the image model of a file not made with a shipped one."""
    return decode_file(
        unpack(data), text_model=text_model, text_prefix=text_prefix, refine=refine, refiner_model=refiner_model,
        original_size=original_size, device=device, dtype=dtype, image_model=image_model,
    )  # fmt: skip


def decode_file(
    file: SticFile,
    *,
    text_model: str | None = None,
    text_prefix: str | None = None,
    refine: bool = True,
    refiner_model: str | None = None,
    original_size: bool = True,
    device: str | None = None,
    dtype: str | None = None,
    image_model: str | None = None,
    held: SticPipeline | None = None,
) -> Decoded:
    """Decode a parsed file (see `decode`); every model it names is resolved before anything is decoded
    (first among `held`'s parts), but for an exact-LM caption model this machine already knows by
    fingerprint, which loads beside the image (`resolve_models`).
    `refiner_model` locates the diffusion refiner's model (a file stores only its fingerprint).
    A declared size above MAX_PIXELS or MAX_SIDE is refused first: a few corrupt header bytes must not make
    the decoder allocate gigabytes."""
    if file.width * file.height > MAX_PIXELS or max(file.width, file.height) > MAX_SIDE:
        raise FormatError(
            f"file declares a {file.width}x{file.height} image, above the {MAX_PIXELS:,} pixels "
            f"and {MAX_SIDE} a side that stic codes (corrupt header?)"
        )
    presentation = Presentation.from_section(file.section(SECTION_PICTURE))
    with status_step("loading the models"):
        if image_model is not None:  # a non-shipped image model named by the caller: a held part
            held = replace(held or SticPipeline(refiner=None), image_codec=load_image_codec(image_model))
        image_codec, text_coder = resolve_models(file, text_model, text_prefix, held)
        refine_section = file.section(SECTION_REFINE) if refine else None
        refiner, seed = (None, 0)
        if refine_section is not None:
            from stic.refine.registry import refiner_for_section

            held_refiner = held.refiner if held is not None and not isinstance(held.refiner, str) else None
            refiner, seed = refiner_for_section(
                refine_section, model=refiner_model, device=device, dtype=dtype, held=held_refiner
            )
    if image_codec is None:
        raise FormatError("file has no image section (a caption-only file: use `stic text decode`)")
    if file.width < 1 or file.height < 1:
        raise FormatError(f"file declares an empty image ({file.width}x{file.height})")
    image_section = file.section(SECTION_IMAGE)
    colour = ColourMap.from_section(file.section(SECTION_COLOUR))
    caption = _CaptionDecoding(text_coder, file.section(SECTION_CAPTION))
    with status_step("decoding the image" + (" (the caption beside it)" if caption.beside else "")):
        image = image_codec.decompress(image_section.payload, file.width, file.height, image_section.codec_id)
    caption.after_image(image)
    if colour is not None:  # after the caption: a coder that sees x̂ saw it uncorrected at encode too
        with status_step("correcting the colours"):
            image = colour.apply(image)
    if refiner is not None:
        prompt = caption.text() if getattr(refiner, "uses_caption", True) else None
        with status_step(f"refining with {refiner.name}"), cores_busy_elsewhere(int(caption.decoding())):
            image = refiner.refine(image, prompt, seed)
    image = presentation.apply(image, original_size)
    return Decoded(image, caption.text(), file, refiner.name if refiner is not None else None, presentation)


def _beside_the_image(coder: TextCoder | None) -> bool:
    """Whether the caption may be coded or decoded beside the image (`_Beside`): its bytes cannot
    depend on threads (`thread_independent`) and the coder does not predict them seeing x̂
    (`needs_image`)."""
    return bool(coder) and getattr(coder, "thread_independent", False) and not getattr(coder, "needs_image", False)


class _Beside:
    """`work()` on a second thread, beside the image's coding or decoding.

    Why: the exact LM engine spends a core on a caption (~0.3 s to code a Kodak caption, ~2 s to
    decode one) while the image codec and the refiner mostly wait on their own convolutions; on a
    second thread the two overlap. Only work whose result cannot depend on threads belongs here.
    The thread runs torch, where the caller has imported it, on one thread (the exact engine needs
    no torch: decoding a caption beside a torch-free image decode imports none). It is a daemon,
    so a call that fails elsewhere, or Ctrl-C, does not wait for it. Its error is raised by
    `result()`."""

    def __init__(self, work, name: str):
        self._work, self._value, self._error = work, None, None
        # torch keeps a thread count per thread, copied from a process-wide default on a thread's
        # first use, and set_num_threads on the worker also sets that default: a caller that uses
        # torch has its count read first so that it stays its own.
        self._torch = sys.modules.get("torch")
        if self._torch is not None:
            self._torch.get_num_threads()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with fixed_threads(1) if self._torch is not None else contextlib.nullcontext():
                self._value = self._work()
        except BaseException as error:  # handed to the caller by result()
            self._error = error

    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self, waiting: str):
        """The work's value (or its error), waited for under the status line `waiting`."""
        if self._thread.is_alive():
            with status_step(waiting):
                self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class _CaptionDecoding:
    """The caption, decoded beside the image (`_Beside`) where nothing can tell the difference:
    a coder whose text cannot depend on threads (`thread_independent`). One that predicts the
    caption seeing x̂ (`needs_image`) waits for it, and a refiner that reads the caption
    (`uses_caption`) waits for the caption."""

    def __init__(self, coder: TextCoder | None, section: Section | None):
        self._coder, self._payload = coder, section.payload if section is not None else None
        self.beside = _beside_the_image(coder)
        self._text: str | None = None
        self._pending = _Beside(lambda: self._coder.decode(self._payload), "stic-caption-decode") if self.beside else None

    def after_image(self, image: np.ndarray) -> None:
        """Decode the caption now unless it is being decoded beside the image."""
        if not self._coder or self.beside:
            return
        coder = self._coder.given_image(image) if getattr(self._coder, "needs_image", False) else self._coder
        with status_step("decoding the caption"):
            self._text = coder.decode(self._payload)

    def decoding(self) -> bool:
        """Whether the caption is still decoding on its thread (taking a core)."""
        return self._pending is not None and self._pending.running()

    def text(self) -> str | None:
        if self._pending is not None:
            self._text, self._pending = self._pending.result("decoding the caption"), None
        return self._text


@dataclass
class SticPipeline:
    """stic's parts as objects you hold, the way a diffusers pipeline holds its models: the image
    codec, the caption coder, the captioner and the refiner. Build it from names or paths with
    `from_pretrained`, or from objects. `encode` codes with these parts; `decode` uses a held part
    wherever the file's section names it (same codec id and fingerprint) and otherwise the part the
    section names through the registries (shipped models, caches keyed by resolved paths), so any
    .stic file decodes. The module's `encode`/`decode` are the same with default parts, and the CLI
    builds one of these from its options.

    `image_codec` None: `quality`/`bpp` pick from the shipped ladder. `text_coder` may stay a name
    (loaded when a caption is coded: no 1 s model load for image-only files). `refiner`: a Refiner,
    None (no refine section), or AUTO (the coding model's own choice)."""

    image_codec: ImageCodec | None = None
    text_coder: TextCoder | str = DEFAULT_TEXT_CODER
    captioner: object | None = None  #: a stic.caption Captioner, or None: captions come from the caller
    refiner: Refiner | str | None = AUTO

    @classmethod
    def from_pretrained(
        cls,
        image_model: str | None = None,
        *,
        text_coder: str = DEFAULT_TEXT_CODER,
        text_prefix: str | None = None,
        captioner: str | None = None,
        caption_prompt: str | None = None,
        refiner: str | None = AUTO,
        refiner_model: str | None = None,
        diffusion_settings=None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> SticPipeline:
        """Parts by name: `image_model` (a shipped name, a folder or compressai:ARCH:QUALITY), a caption
        coder name (with a learned `text_prefix` for the lm coder), a VLM `captioner` id or folder, a
        refiner name (`none`, `realesrgan-stic`, `diffusion[:MODEL]`, ...; AUTO: the coding model's
        own). `device`/`dtype` place the captioner and a diffusion refiner (stic.placement)."""
        from stic.caption.registry import make_captioner
        from stic.refine.registry import get_refiner

        coder: TextCoder | str = text_coder
        if text_prefix is not None:
            if text_coder.partition(":")[0] != "lm":
                raise InputError(f"a learned prefix is for the lm coder, not {text_coder!r}")
            coder = get_text_coder(text_coder, prefix=text_prefix)
        if refiner is not None and refiner != AUTO:
            refiner = None if refiner in ("none", "identity") else get_refiner(
                refiner, model=refiner_model, settings=diffusion_settings, device=device, dtype=dtype
            )
        return cls(
            image_codec=load_image_codec(image_model) if image_model else None,
            text_coder=coder,
            captioner=make_captioner(model=captioner, prompt=caption_prompt, device=device, dtype=dtype),
            refiner=refiner,
        )

    def encode(self, image: np.ndarray, *, caption: str | None = None, source: str | None = None, **options) -> Encoded:
        """`stic.pipeline.encode` with this pipeline's parts; a held captioner writes the caption
        when none is given (`source`: the image's file name, for precomputed captions)."""
        if caption is None and self.captioner is not None:
            caption = self.captioner.caption(image, source).text
        if self.image_codec is not None:
            options["model"] = self.image_codec
        return encode(image, caption=caption, text_coder=self.text_coder, refiner=self.refiner, **options)

    def decode(self, data: bytes, **options) -> Decoded:
        """`stic.pipeline.decode`, using this pipeline's parts wherever the file names them."""
        return decode_file(unpack(data), held=self, **options)
