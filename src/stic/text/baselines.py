"""Classical caption coders (raw UTF-8, zlib, bz2, raw LZMA, brotli, zstd, zstd + a caption dictionary).

They exist so that the LM coder's gain is measured against what anyone would try first. Each one
speaks the TextCoder protocol and is as strong as its library allows at its best setting, so the
comparison flatters no one. Decoding never trusts the stream: output is capped at MAX_TEXT_BYTES
(no decompression bombs), a truncated or padded stream is refused, and every library error
becomes a FormatError.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import lzma
import zlib
from pathlib import Path

import brotli
import zstandard

from stic import codecs
from stic.errors import FormatError, InputError, ModelNotFoundError
from stic.paths import cache_dir, data_dir, replace_atomically

#: longest text a decoder will produce; far above any caption, far below a memory problem
MAX_TEXT_BYTES = 1 << 20

# Raw LZMA has no header, so encoder and decoder must agree on the filter chain. A 1 MiB
# dictionary covers MAX_TEXT_BYTES; a bigger one only costs the decoder memory.
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 20}]


def text_to_utf8(text: str) -> bytes:
    """UTF-8 bytes of `text`; InputError for what UTF-8 cannot hold (lone surrogates)."""
    if not isinstance(text, str):
        raise InputError(f"a caption must be text (str), got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(f"text cannot be coded as UTF-8 at character {err.start}: {err.reason}") from err


def utf8_to_text(raw: bytes, coder: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"{coder}: corrupt stream (decoded bytes are not UTF-8)") from err


def _check_inflated(coder: str, out: bytes, finished: bool, trailing: bytes) -> bytes:
    if len(out) > MAX_TEXT_BYTES:
        raise FormatError(f"{coder}: stream decodes to more than {MAX_TEXT_BYTES} bytes; refused")
    if not finished:
        raise FormatError(f"{coder}: truncated stream")
    if trailing:
        raise FormatError(f"{coder}: corrupt stream ({len(trailing)} bytes after its end)")
    return out


class CompressorTextCoder:
    """Base of the byte-compressor baselines: UTF-8, then a library's compressor."""

    name: str
    codec_id: int
    #: the exceptions the library raises on a bad stream
    library_errors: tuple[type[BaseException], ...] = ()

    def fingerprint(self) -> bytes:
        return b""

    def encode(self, text: str) -> bytes:
        return self.compress(text_to_utf8(text))

    def decode(self, data: bytes) -> str:
        try:
            raw = self.decompress(bytes(data))
        except self.library_errors as err:
            raise FormatError(f"{self.name}: corrupt stream ({err})") from err
        return utf8_to_text(raw, self.name)

    def compress(self, raw: bytes) -> bytes:
        raise NotImplementedError

    def decompress(self, data: bytes) -> bytes:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class RawCoder(CompressorTextCoder):
    """UTF-8 as is: the reference every saving is counted against."""

    name = "raw"
    codec_id = codecs.TEXT_RAW

    def compress(self, raw: bytes) -> bytes:
        return raw

    def decompress(self, data: bytes) -> bytes:
        if len(data) > MAX_TEXT_BYTES:
            raise FormatError(f"raw: {len(data)} bytes is more than the {MAX_TEXT_BYTES} allowed")
        return data


class _StdlibStreamCoder(CompressorTextCoder):
    """zlib, bz2 and lzma share one decompressor API: decompress(data, max_length), eof, unused_data."""

    def new_decompressor(self):
        raise NotImplementedError

    def decompress(self, data: bytes) -> bytes:
        inflater = self.new_decompressor()
        out = inflater.decompress(data, MAX_TEXT_BYTES + 1)
        return _check_inflated(self.name, out, inflater.eof, inflater.unused_data)


class ZlibCoder(_StdlibStreamCoder):
    """zlib format (RFC 1950) at level 9, as `zlib.compress` writes it."""

    name = "zlib"
    codec_id = codecs.TEXT_ZLIB
    library_errors = (zlib.error,)

    def compress(self, raw: bytes) -> bytes:
        return zlib.compress(raw, 9)

    def new_decompressor(self):
        return zlib.decompressobj()


class Bz2Coder(_StdlibStreamCoder):
    name = "bz2"
    codec_id = codecs.TEXT_BZ2
    library_errors = (OSError, ValueError)

    def compress(self, raw: bytes) -> bytes:
        return bz2.compress(raw, 9)

    def new_decompressor(self):
        return bz2.BZ2Decompressor()


class LzmaCoder(_StdlibStreamCoder):
    """A raw LZMA2 stream (no .xz container, whose 60-odd bytes would dwarf a caption)."""

    name = "lzma"
    codec_id = codecs.TEXT_LZMA
    library_errors = (lzma.LZMAError,)

    def compress(self, raw: bytes) -> bytes:
        return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)

    def new_decompressor(self):
        return lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)


class BrotliCoder(CompressorTextCoder):
    """Brotli at quality 11 in text mode; its built-in dictionary is English-heavy web text."""

    name = "brotli"
    codec_id = codecs.TEXT_BROTLI
    library_errors = (brotli.error,)

    def compress(self, raw: bytes) -> bytes:
        return brotli.compress(raw, mode=brotli.MODE_TEXT, quality=11)

    def decompress(self, data: bytes) -> bytes:
        inflater = brotli.Decompressor()
        out = inflater.process(data, output_buffer_limit=MAX_TEXT_BYTES + 1)
        if len(out) > MAX_TEXT_BYTES:
            return _check_inflated(self.name, out, True, b"")
        # brotli refuses bytes after the end itself (brotli.error), so none can be left over
        return _check_inflated(self.name, out, inflater.is_finished(), b"")


class ZstdCoder(CompressorTextCoder):
    """A standard zstd frame at level 22, with the content size (it bounds the decoder's output)."""

    name = "zstd"
    codec_id = codecs.TEXT_ZSTD
    library_errors = (zstandard.ZstdError,)

    def __init__(self, dictionary: zstandard.ZstdCompressionDict | None = None, level: int = 22):
        self._dictionary = dictionary
        self._compressor = zstandard.ZstdCompressor(
            level=level,
            dict_data=dictionary,
            write_content_size=True,
            write_checksum=False,  # the container's CRC32 already covers the section
            write_dict_id=False,  # the section's fingerprint names the dictionary
        )

    def compress(self, raw: bytes) -> bytes:
        return self._compressor.compress(raw)

    def decompress(self, data: bytes) -> bytes:
        size = zstandard.frame_content_size(data)
        if size < 0:
            raise FormatError(f"{self.name}: corrupt stream (frame has no content size)")
        if size > MAX_TEXT_BYTES:
            raise FormatError(f"{self.name}: stream declares {size} bytes, more than the {MAX_TEXT_BYTES} allowed")
        kwargs = {"dict_data": self._dictionary} if self._dictionary is not None else {}
        inflater = zstandard.ZstdDecompressor(**kwargs).decompressobj()
        out = inflater.decompress(data)
        out = _check_inflated(self.name, out, inflater.eof, inflater.unused_data)
        if len(out) != size:
            raise FormatError(f"{self.name}: corrupt stream (declares {size} bytes, holds {len(out)})")
        return out


# --- zstd with a dictionary trained on a disjoint caption corpus ----------------------------------

#: COCO val2017 captions: human captions of other images than Kodak's, so training on them is fair
CAPTION_CORPUS = Path("coco_mini") / "captions_val2017.json"
# The recipe: the 5 captions of an image joined into one paragraph per sample (closer to a long
# caption than single sentences), COVER with fixed k and d (no parameter search: deterministic and
# quick, under a second), room for 1 MiB (training stops near 0.6 MiB). Change it and the cache name changes.
_DICT_RECIPE = {"version": 1, "dict_size": 1 << 20, "k": 50, "d": 6}


def caption_corpus_samples(corpus: Path) -> list[bytes]:
    """One sample per image: its captions, stripped and joined by spaces, in image-id order."""
    try:
        annotations = json.loads(corpus.read_bytes())["annotations"]
        by_image: dict[int, list[str]] = {}
        for ann in annotations:
            by_image.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]).strip())
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelNotFoundError(f"caption corpus {corpus} is unreadable: {err}") from err
    return [" ".join(caps).encode("utf-8") for _, caps in sorted(by_image.items())]


def caption_dictionary(corpus: Path | None = None, cache: Path | None = None) -> bytes:
    """The trained zstd dictionary: read from the cache, or trained once from the corpus and cached.

    Derived from third-party data, so it is never shipped: each machine trains the same bytes
    from the same corpus (the recipe is deterministic), and the fingerprint proves it.
    """
    corpus = corpus or data_dir() / CAPTION_CORPUS
    if not corpus.is_file():
        raise ModelNotFoundError(
            f"zstd-dict needs the caption corpus {corpus} to train its dictionary "
            "(set STIC_DATA to the folder holding coco_mini/captions_val2017.json)"
        )
    recipe = json.dumps(_DICT_RECIPE, sort_keys=True).encode()
    key = hashlib.sha256(recipe + hashlib.sha256(corpus.read_bytes()).digest()).hexdigest()[:16]
    path = (cache or cache_dir()) / "zstd" / f"captions-{key}.zdict"
    if path.is_file():
        return path.read_bytes()
    trained = zstandard.train_dictionary(
        _DICT_RECIPE["dict_size"],
        caption_corpus_samples(corpus),
        k=_DICT_RECIPE["k"],
        d=_DICT_RECIPE["d"],
        threads=1,
    ).as_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda tmp: tmp.write_bytes(trained))  # concurrent first uses write the same bytes
    return trained


class ZstdDictCoder(ZstdCoder):
    """zstd-22 primed with a caption dictionary; the fingerprint is 4 bytes of its SHA-256."""

    name = "zstd-dict"
    codec_id = codecs.TEXT_ZSTD_DICT

    def __init__(self, dictionary: bytes):
        try:
            parsed = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_FULLDICT)
            parsed.precompute_compress(level=22)
        except zstandard.ZstdError as err:
            raise ModelNotFoundError(f"zstd-dict: the cached dictionary is not a zstd dictionary ({err})") from err
        super().__init__(parsed)
        self._fingerprint = hashlib.sha256(dictionary).digest()[:4]

    @classmethod
    def from_corpus(cls, corpus: Path | None = None, cache: Path | None = None) -> "ZstdDictCoder":
        return cls(caption_dictionary(corpus, cache))

    def fingerprint(self) -> bytes:
        return self._fingerprint
