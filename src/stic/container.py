"""The .stic file format: a few bytes of header around length-prefixed, CRC-checked sections.

At 0.01 bpp a whole Kodak image is ~490 bytes, so every header byte is counted: varints for sizes,
1 byte for a section's kind and flags, 4-byte model fingerprints only where a model made the data.
The byte-level spec is docs/format.md; this module is its only implementation.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from stic.errors import FormatError, InputError

MAGIC = b"STC"
#: 2: section CRCs also cover the file header (version 1 left width/height unchecked)
VERSION = 2

SECTION_CAPTION = 1
SECTION_IMAGE = 2
SECTION_REFINE = 3  # optional: which refiner (codec id), its seed and parameters
SECTION_PICTURE = 4  # optional: present the picture grey and/or at its original size (stic.picture)
SECTION_COLOUR = 5  # optional: a colour correction of x̂, applied before refining (stic.colour)
SECTION_NAMES = {
    SECTION_CAPTION: "caption", SECTION_IMAGE: "image", SECTION_REFINE: "refine", SECTION_PICTURE: "picture",
    SECTION_COLOUR: "colour",
}  # fmt: skip

FINGERPRINT_SIZE = 4
MAX_KIND = 0x3F
MAX_DIMENSION = 1 << 20  # declared width/height above this are corrupt, not merely large
MAX_SECTIONS = 64

_REQUIRED = 0x80
_HAS_FINGERPRINT = 0x40
_MAX_VARINT_BYTES = 9  # 63 bits: more than any length a file can hold


@dataclass(frozen=True)
class Section:
    """One section: `kind` says what it holds, `codec_id` how it was coded (stic.codecs)."""

    kind: int
    codec_id: int
    payload: bytes
    fingerprint: bytes = b""
    required: bool = True

    def __post_init__(self):
        if not 0 <= self.kind <= MAX_KIND:
            raise ValueError(f"section kind must be in 0..{MAX_KIND}, got {self.kind}")
        if self.fingerprint and len(self.fingerprint) != FINGERPRINT_SIZE:
            raise ValueError(f"a fingerprint is {FINGERPRINT_SIZE} bytes, got {len(self.fingerprint)}")
        if self.codec_id < 0:
            raise ValueError("codec id must be >= 0")

    @property
    def kind_name(self) -> str:
        return SECTION_NAMES.get(self.kind, f"unknown-{self.kind}")


@dataclass
class SticFile:
    """A parsed file. `sections` holds every known section plus unknown optional ones (skipped)."""

    width: int
    height: int
    sections: list[Section] = field(default_factory=list)
    size: int = 0  # bytes of the whole file as read or written

    def section(self, kind: int) -> Section | None:
        return next((s for s in self.sections if s.kind == kind), None)

    @property
    def payload_bytes(self) -> int:
        return sum(len(s.payload) for s in self.sections)

    @property
    def overhead_bytes(self) -> int:
        """Everything that is not a section payload: magic, sizes, section headers, CRCs."""
        return self.size - self.payload_bytes


def encode_varint(value: int) -> bytes:
    """LEB128: 7 bits a byte, low bits first."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise FormatError(
                f"truncated file: {what} needs {n} bytes at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self, what: str) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            (byte,) = self.take(1, what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise FormatError(f"corrupt file: {what} at offset {self.pos} is an over-long varint")


def decode_varint(data: bytes, pos: int = 0, what: str = "varint") -> tuple[int, int]:
    """Read one varint at `pos`; return (value, position after it). FormatError if truncated."""
    reader = _Reader(data)
    reader.pos = pos
    return reader.varint(what), reader.pos


def _section_header(section: Section) -> bytes:
    flags = section.kind | (_REQUIRED if section.required else 0)
    flags |= _HAS_FINGERPRINT if section.fingerprint else 0
    return (
        bytes([flags])
        + encode_varint(section.codec_id)
        + section.fingerprint
        + encode_varint(len(section.payload))
    )


def pack(width: int, height: int, sections: list[Section]) -> bytes:
    """Serialise a file to bytes."""
    if not (0 <= width <= MAX_DIMENSION and 0 <= height <= MAX_DIMENSION):
        raise InputError(f"image size {width}x{height} is outside 0..{MAX_DIMENSION}")
    if len(sections) > MAX_SECTIONS:
        raise InputError(f"at most {MAX_SECTIONS} sections, got {len(sections)}")
    kinds = [s.kind for s in sections]
    if len(set(kinds)) != len(kinds):
        raise InputError(f"duplicate section kinds: {kinds}")
    out = bytearray(MAGIC)
    out.append(VERSION)
    out += encode_varint(width) + encode_varint(height) + encode_varint(len(sections))
    file_header = bytes(out)
    for section in sections:
        header = _section_header(section)
        out += header + section_crc(file_header, header, section.payload).to_bytes(4, "big") + section.payload
    return bytes(out)


def section_crc(file_header: bytes, section_header: bytes, payload: bytes) -> int:
    """CRC-32 over the file header (magic to section count), the section's header and its
    payload: a damaged width or height fails every section's check, so it cannot silently
    decode to a picture of another size."""
    return zlib.crc32(payload, zlib.crc32(section_header, zlib.crc32(file_header)))


def unpack(data: bytes) -> SticFile:
    """Parse bytes; raise FormatError naming the first problem found. Never allocates more
    than the input's size: declared lengths are checked against the bytes actually present."""
    reader = _Reader(data)
    magic = reader.take(len(MAGIC), "magic")
    if magic != MAGIC:
        raise FormatError("not a .stic file (bad magic bytes)")
    (version,) = reader.take(1, "format version")
    if version != VERSION:
        raise FormatError(
            f"unsupported .stic format version {version}; this stic reads version {VERSION}"
        )
    width = reader.varint("width")
    height = reader.varint("height")
    if width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise FormatError(f"corrupt file: declared image size {width}x{height} is implausible")
    count = reader.varint("section count")
    if count > MAX_SECTIONS:
        raise FormatError(f"corrupt file: {count} sections declared (at most {MAX_SECTIONS})")
    file_header = data[: reader.pos]
    sections = []
    for index in range(count):
        start = reader.pos
        (flags,) = reader.take(1, f"section {index} kind")
        codec_id = reader.varint(f"section {index} codec id")
        fingerprint = (
            reader.take(FINGERPRINT_SIZE, f"section {index} fingerprint")
            if flags & _HAS_FINGERPRINT
            else b""
        )
        length = reader.varint(f"section {index} length")
        header = data[start : reader.pos]
        crc = int.from_bytes(reader.take(4, f"section {index} CRC"), "big")
        payload = reader.take(length, f"section {index} payload")
        if section_crc(file_header, header, payload) != crc:
            raise FormatError(
                f"corrupt file: section {index} fails its CRC check (the section or the file header is damaged)"
            )
        kind = flags & MAX_KIND
        required = bool(flags & _REQUIRED)
        if kind not in SECTION_NAMES:
            if required:
                raise FormatError(
                    f"section {index} has unknown kind {kind} marked required "
                    "(written by a newer stic?); cannot decode this file"
                )
        elif any(s.kind == kind for s in sections):
            raise FormatError(f"corrupt file: two {SECTION_NAMES[kind]} sections")
        sections.append(Section(kind, codec_id, payload, fingerprint, required))
    if reader.pos != len(data):
        raise FormatError(f"corrupt file: {len(data) - reader.pos} unexpected bytes after the last section")
    return SticFile(width, height, sections, size=len(data))


def write_file(path: str | os.PathLike, width: int, height: int, sections: list[Section]) -> SticFile:
    """Write atomically: a temporary file in the target folder, renamed over the target, so a
    failure never leaves a half-written file."""
    data = pack(width, height, sections)
    write_bytes_atomic(path, data)
    return SticFile(width, height, list(sections), size=len(data))


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`: readers see the
    old file or the whole new one, never a part. A failure (full disk, read-only folder, target is
    a folder) removes the temporary file and raises InputError naming the path."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise InputError(f"output folder does not exist: {folder}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise InputError(f"cannot write to {folder}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            # mkstemp makes the file 0600; an output gets the mode any new file of the user gets
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {target}: {err.strerror or err}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_file(path: str | os.PathLike) -> SticFile:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as err:
        raise InputError(f"no such file: {path}") from err
    except IsADirectoryError as err:
        raise InputError(f"is a directory, not a .stic file: {path}") from err
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from err
    try:
        return unpack(data)
    except FormatError as err:
        raise FormatError(f"{path}: {err}") from err
