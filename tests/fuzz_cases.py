"""Broken .stic files for fuzzing, and the rule every one of them must obey.

Seeds are real files made by the encoder; mutators break them at every layer: raw bytes, header
fields (over-long and oversized varints, wrong section counts, huge declared sizes), section
framing, and payload damage with the CRCs recomputed so that it reaches the caption and image
decoders. `run_case` is the rule: a file either decodes to an image of its declared size or raises
a stic error with a message; anything else (another exception, an empty message) is a crash.

Shared by tests/test_fuzz.py (a few thousand cases) and bench/fuzz_stic.py (100,000+).
"""

from __future__ import annotations

import random
import signal
import time
import traceback
from dataclasses import dataclass, field, replace

import numpy as np

from stic import container as c
from stic.errors import SticError
from stic.fileinfo import describe

OVERLONG_VARINT = b"\xff" * 9 + b"\x01"  # 10 bytes: longer than any valid varint
ODD_VALUES = [0, 1, 63, 64, 65, 127, 128, 4096, 4097, 8000, 1 << 20, (1 << 20) + 1, 1 << 32, (1 << 63) - 1]


@dataclass
class RawSection:
    """A section as bytes on disk; fields may hold values the writer would never produce."""

    flags: int
    codec: bytes  # varint bytes
    fingerprint: bytes
    length: bytes | None  # varint bytes; None = the payload's true length
    payload: bytes
    crc: int | None = None  # None = computed (the damage then reaches the decoders)


@dataclass
class Layout:
    """A whole file as fields: `assemble` turns it into bytes, valid or not."""

    width: bytes
    height: bytes
    count: bytes | None  # None = the true number of sections
    sections: list[RawSection] = field(default_factory=list)
    magic: bytes = c.MAGIC
    version: int = c.VERSION

    @classmethod
    def of(cls, data: bytes) -> Layout:
        """Split a valid file into fields (CRCs left to be recomputed)."""
        parsed = c.unpack(data)
        sections = []
        for s in parsed.sections:
            flags = s.kind | (0x80 if s.required else 0) | (0x40 if s.fingerprint else 0)
            sections.append(RawSection(flags, c.encode_varint(s.codec_id), s.fingerprint, None, s.payload))
        return cls(c.encode_varint(parsed.width), c.encode_varint(parsed.height), None, sections)

    def assemble(self) -> bytes:
        count = self.count if self.count is not None else c.encode_varint(len(self.sections))
        head = self.magic + bytes([self.version & 0xFF]) + self.width + self.height + count
        out = bytearray(head)
        for s in self.sections:
            length = s.length if s.length is not None else c.encode_varint(len(s.payload))
            header = bytes([s.flags & 0xFF]) + s.codec + s.fingerprint + length
            crc = s.crc if s.crc is not None else c.section_crc(head, header, s.payload)
            out += header + crc.to_bytes(4, "big") + s.payload
        return bytes(out)


# -- mutators: (rng, seed bytes, seed layout) -> bytes ---------------------------------------------
def _odd_varint(rng: random.Random) -> bytes:
    if rng.random() < 0.15:
        return OVERLONG_VARINT[: rng.randint(1, len(OVERLONG_VARINT))]  # also unterminated varints
    return c.encode_varint(rng.choice(ODD_VALUES) if rng.random() < 0.6 else rng.getrandbits(rng.randint(1, 63)))


def _flip_bits(rng: random.Random, data: bytes, n: int) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(n):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def random_bytes(rng, seed, layout):
    data = rng.randbytes(rng.randint(0, 300))
    return (c.MAGIC + bytes([c.VERSION]) + data) if rng.random() < 0.5 else data


def truncate(rng, seed, layout):
    return seed[: rng.randrange(len(seed))]


def bit_flips(rng, seed, layout):
    return _flip_bits(rng, seed, rng.randint(1, 4))


def append_bytes(rng, seed, layout):
    return seed + rng.randbytes(rng.randint(1, 40))


def splice(rng, seed, layout):
    cut = rng.randrange(len(seed) + 1)
    return seed[:cut] + seed[rng.randrange(len(seed) + 1) :]


def header_field(rng, seed, layout):
    """An odd width, height or section count; CRCs are recomputed over it (they cover the header)."""
    which = rng.choice(["width", "height", "count", "version", "magic"])
    if which == "version":
        return replace(layout, version=rng.randrange(256)).assemble()
    if which == "magic":
        return replace(layout, magic=rng.randbytes(3)).assemble()
    return replace(layout, **{which: _odd_varint(rng)}).assemble()


def declared_size(rng, seed, layout):
    """A CRC-valid file declaring another image size: small, or above the decoder's pixel limit
    (legal large sizes decode garbage in time proportional to their pixels: not a fuzz case)."""
    w, h = rng.choice(
        [(rng.randint(0, 200), rng.randint(0, 200)), (4097, 4097), (8000, 8000), (1 << 20, 1 << 20),
         (1, 1 << 20), (1 << 20, 0), (4096, 4097), (16385, 1), (rng.randint(4097, 1 << 20), rng.randint(4097, 1 << 20))]
    )  # fmt: skip
    return replace(layout, width=c.encode_varint(w), height=c.encode_varint(h)).assemble()


def section_count(rng, seed, layout):
    n = len(layout.sections)
    value = rng.choice([0, max(0, n - 1), n + 1, n + 2, c.MAX_SECTIONS, c.MAX_SECTIONS + 1, 1 << 32])
    return replace(layout, count=c.encode_varint(value)).assemble()


def _with_section(rng, layout, change) -> bytes:
    if not layout.sections:
        return layout.assemble()
    sections = list(layout.sections)
    i = rng.randrange(len(sections))
    sections[i] = change(sections[i])
    return replace(layout, sections=sections).assemble()


def section_length(rng, seed, layout):
    def change(s):
        true = len(s.payload)
        value = rng.choice([0, max(0, true - 1), true + 1, true + rng.randint(2, 1000), 1 << 32, (1 << 63) - 1])
        length = c.encode_varint(value) if rng.random() < 0.85 else OVERLONG_VARINT
        return replace(s, length=length)

    return _with_section(rng, layout, change)


def section_flags(rng, seed, layout):
    return _with_section(rng, layout, lambda s: replace(s, flags=rng.randrange(256), fingerprint=s.fingerprint))


def section_codec(rng, seed, layout):
    return _with_section(rng, layout, lambda s: replace(s, codec=c.encode_varint(rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 99, 1 << 40]))))


def section_fingerprint(rng, seed, layout):
    def change(s):
        if s.fingerprint and rng.random() < 0.3:
            return replace(s, fingerprint=b"", flags=s.flags & ~0x40)
        return replace(s, fingerprint=rng.randbytes(4), flags=s.flags | 0x40)

    return _with_section(rng, layout, change)


def payload_damage(rng, seed, layout):
    """Damage inside one payload with the CRC recomputed: only the section's decoder can notice."""

    def change(s):
        p = s.payload
        kind = rng.randrange(6)
        if kind == 0:
            p = _flip_bits(rng, p, rng.randint(1, 8))
        elif kind == 1:
            p = p[: rng.randrange(len(p) + 1)]
        elif kind == 2:
            p = p + rng.randbytes(rng.randint(1, 64))
        elif kind == 3:
            p = rng.randbytes(rng.randint(0, max(1, 2 * len(p))))
        elif kind == 4 and p:
            start = rng.randrange(len(p))
            p = p[:start] + bytes([rng.choice([0, 0xFF])]) * rng.randint(1, 16) + p[start + 1 :]
        else:
            p = p[: rng.randrange(len(p) + 1)] + p
        return replace(s, payload=p)

    return _with_section(rng, layout, change)


def section_shuffle(rng, seed, layout):
    """Dropped, duplicated or reordered sections (CRC-valid)."""
    sections = list(layout.sections)
    action = rng.randrange(3)
    if action == 0 and sections:
        sections.pop(rng.randrange(len(sections)))
    elif action == 1 and sections:
        sections.insert(rng.randrange(len(sections) + 1), rng.choice(sections))
    else:
        rng.shuffle(sections)
    return replace(layout, sections=sections).assemble()


MUTATORS = {
    f.__name__: f
    for f in (
        random_bytes, truncate, bit_flips, append_bytes, splice, header_field, declared_size,
        section_count, section_length, section_flags, section_codec, section_fingerprint,
        payload_damage, section_shuffle,
    )
}  # fmt: skip


def mutate(rng: random.Random, seed: bytes, layout: Layout, rounds: int = 1) -> tuple[str, bytes]:
    """Apply 1..rounds random mutators in a row (a later one works on the earlier one's bytes, or
    on an empty file's fields when those bytes do not parse); returns (their names joined by +, bytes)."""
    names = [rng.choice(list(MUTATORS))]
    data = MUTATORS[names[0]](rng, seed, layout)
    for _ in range(rng.randint(0, rounds - 1)):
        try:
            layout = Layout.of(data)
        except SticError:
            layout = Layout(b"\x00", b"\x00", None)
        names.append(rng.choice(list(MUTATORS)))
        data = MUTATORS[names[-1]](rng, data or seed, layout)
    return "+".join(names), data


# -- the rule ------------------------------------------------------------------------------------
class CaseTimeout(Exception):
    """Raised by the alarm when a case runs past its time limit (a hang)."""


def _alarm(signum, frame):
    raise CaseTimeout


@dataclass
class Outcome:
    status: str  # "parsed" | "decoded" | "error" | "crash" | "hang"
    message: str = ""
    seconds: float = 0.0
    reached_decoder: bool = False


def run_case(data: bytes, decode=None, time_limit: float = 0.0) -> Outcome:
    """Parse `data` (and describe it, as `stic info` does); if it parses and `decode` is given,
    call decode(file) -> image (or text) and check an image has the declared size. A SticError with a
    message is the expected failure; any other exception, an empty message, a wrong-size image or
    running past `time_limit` seconds (0 = no limit) is a bug."""
    started = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _alarm) if time_limit else None
    if time_limit:
        signal.setitimer(signal.ITIMER_REAL, time_limit)
    reached = False
    try:
        file = c.unpack(data)
        describe(file)
        if decode is None:
            return Outcome("parsed", seconds=time.perf_counter() - started)
        reached = True
        image = decode(file)
        if isinstance(image, str):  # a caption-only file's text
            return Outcome("decoded", seconds=time.perf_counter() - started, reached_decoder=reached)
        if not (isinstance(image, np.ndarray) and image.shape == (file.height, file.width, 3) and image.dtype == np.uint8):
            shape = getattr(image, "shape", None)
            return Outcome("crash", f"decoded image {shape} differs from declared {file.width}x{file.height}", time.perf_counter() - started, reached)
        return Outcome("decoded", seconds=time.perf_counter() - started, reached_decoder=reached)
    except CaseTimeout:
        return Outcome("hang", f"ran past {time_limit} s", time.perf_counter() - started, reached)
    except SticError as err:
        message = f"{type(err).__name__}: {err}"
        status = "error" if str(err).strip() else "crash"
        return Outcome(status, message, time.perf_counter() - started, reached)
    except Exception as err:  # noqa: BLE001 -- this is what the fuzzer looks for
        trace = "".join(traceback.format_exception(err)[-3:])
        return Outcome("crash", f"{type(err).__name__}: {err}\n{trace}", time.perf_counter() - started, reached)
    finally:
        if time_limit:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


# -- seeds ----------------------------------------------------------------------------------------
def sample_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth picture with some texture (codes like a photo, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(1, width - 1), y * 255 / max(1, height - 1), (x + y) * 127 / max(1, width + height - 2)], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def make_seeds(with_lm: bool = False) -> dict[str, bytes]:
    """Valid files from the real encoder: several sizes, caption coders, refine sections, a
    caption-only file and one with an unknown optional section. `with_lm` adds files whose caption
    is coded by the default LM (loading it takes seconds)."""
    from stic import pipeline

    caption = "A red barn in a green field under a blue sky."
    seeds = {
        "64x48-zlib": pipeline.encode(sample_image(48, 64), quality=1, caption=caption, text_coder="zlib", refiner=None).data,
        "70x33-q3-refine": pipeline.encode(sample_image(33, 70, 1), quality=3, caption=caption, text_coder="brotli",
                                           refiner="realesrgan-compact", seed=5).data,
        "1x1-no-caption": pipeline.encode(sample_image(1, 1, 2), quality=2, refiner=None).data,
        "130x9-raw": pipeline.encode(sample_image(9, 130, 3), quality=1, caption="x", text_coder="raw", refiner=None).data,
    }  # fmt: skip
    base = c.unpack(seeds["64x48-zlib"])
    extra = c.Section(40, 3, b"future side information", required=False)
    seeds["64x48-unknown-optional"] = c.pack(base.width, base.height, [*base.sections, extra])
    seeds["caption-only-zstd"] = c.pack(0, 0, [c.Section(c.SECTION_CAPTION, 5, __import__("zstandard").compress(caption.encode()))])
    if with_lm:
        from stic.text.registry import get_text_coder

        lm = get_text_coder("lm")
        seeds["caption-only-lm"] = c.pack(0, 0, [c.Section(c.SECTION_CAPTION, lm.codec_id, lm.encode(caption), lm.fingerprint())])
        seeds["64x48-lm"] = pipeline.encode(sample_image(48, 64, 4), quality=1, caption=caption, refiner=None).data
        seeds["48x40-lm-refine"] = pipeline.encode(sample_image(40, 48, 5), quality=2, caption=caption,
                                                   refiner="realesrgan-compact").data  # fmt: skip
    return seeds


def decoder(refine: bool = True):
    """The full decoder as a fuzz target: pipeline.decode_file with the shipped models, or for a
    caption-only file the caption decoder, as `stic text decode` runs it."""
    from stic import pipeline
    from stic.text.registry import text_coder_for_section

    def decode(file: c.SticFile) -> np.ndarray | str:
        caption = file.section(c.SECTION_CAPTION)
        if file.section(c.SECTION_IMAGE) is None and caption is not None:
            return text_coder_for_section(caption.codec_id, caption.fingerprint).decode(caption.payload)
        return pipeline.decode_file(file, refine=refine).image

    return decode
