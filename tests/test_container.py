import pytest

from stic import container as c
from stic.errors import FormatError, InputError


def _sample():
    return [
        c.Section(c.SECTION_CAPTION, 16, b"caption-bits", fingerprint=b"\x01\x02\x03\x04"),
        c.Section(c.SECTION_IMAGE, 1, bytes(range(200)), fingerprint=b"abcd"),
    ]


def test_round_trip_and_overhead():
    data = c.pack(768, 512, _sample())
    parsed = c.unpack(data)
    assert (parsed.width, parsed.height) == (768, 512)
    assert parsed.sections == _sample()
    assert parsed.section(c.SECTION_IMAGE).payload == bytes(range(200))
    assert parsed.size == len(data)
    assert parsed.overhead_bytes == len(data) - 12 - 200
    # magic+version 4, sizes 2+2, count 1; per section: flags 1, codec 1, fp 4, len 1-2, crc 4
    assert parsed.overhead_bytes == 9 + (1 + 1 + 4 + 1 + 4) + (1 + 1 + 4 + 2 + 4)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**62])
def test_varint_round_trip(value):
    reader = c._Reader(c.encode_varint(value))
    assert reader.varint("x") == value


def test_every_truncation_is_a_format_error():
    data = c.pack(64, 48, _sample())
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            c.unpack(data[:cut])


def test_every_bit_flip_is_detected():
    data = c.pack(64, 48, _sample())
    for pos in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            # the section CRCs cover the file header too: no flip goes unnoticed, not even in the size
            with pytest.raises(FormatError):
                c.unpack(bytes(flipped))


def test_bad_magic_and_version():
    data = c.pack(1, 1, [])
    with pytest.raises(FormatError, match="not a .stic file"):
        c.unpack(b"PNG" + data[3:])
    with pytest.raises(FormatError, match="version 9"):
        c.unpack(data[:3] + b"\x09" + data[4:])


def test_unknown_optional_section_is_skipped_unknown_required_refused():
    extra = c.Section(40, 3, b"future side info", required=False)
    parsed = c.unpack(c.pack(8, 8, _sample() + [extra]))
    assert parsed.section(c.SECTION_CAPTION).payload == b"caption-bits"
    required = c.Section(41, 3, b"must understand", required=True)
    with pytest.raises(FormatError, match="unknown kind 41 marked required"):
        c.unpack(c.pack(8, 8, _sample() + [required]))


def test_oversized_declared_lengths_do_not_allocate():
    # header says a 2**60-byte payload in a 30-byte file
    header = bytes([c.SECTION_IMAGE | 0x80]) + c.encode_varint(1) + c.encode_varint(2**60)
    data = c.MAGIC + bytes([c.VERSION]) + b"\x01\x01\x01" + header + b"\0" * 8
    with pytest.raises(FormatError, match="truncated"):
        c.unpack(data)
    huge = c.MAGIC + bytes([c.VERSION]) + c.encode_varint(2**40) + b"\x01\x00"
    with pytest.raises(FormatError, match="implausible"):
        c.unpack(huge)
    many = c.MAGIC + bytes([c.VERSION]) + b"\x01\x01" + c.encode_varint(10**9)
    with pytest.raises(FormatError, match="sections declared"):
        c.unpack(many)


def test_trailing_garbage_and_duplicates():
    data = c.pack(2, 2, _sample())
    with pytest.raises(FormatError, match="unexpected bytes"):
        c.unpack(data + b"\0")
    with pytest.raises(InputError, match="duplicate"):
        c.pack(2, 2, _sample() + _sample()[:1])


def test_write_is_atomic_and_checks_folder(tmp_path):
    target = tmp_path / "out.stic"
    c.write_file(target, 3, 2, _sample())
    assert c.read_file(target).sections == _sample()
    assert [p.name for p in tmp_path.iterdir()] == ["out.stic"]
    with pytest.raises(InputError, match="does not exist"):
        c.write_file(tmp_path / "missing" / "x.stic", 3, 2, _sample())
    with pytest.raises(InputError, match="no such file"):
        c.read_file(tmp_path / "nope.stic")
    (tmp_path / "junk.stic").write_bytes(b"hello")
    with pytest.raises(FormatError, match="junk.stic"):
        c.read_file(tmp_path / "junk.stic")


def test_outputs_get_the_users_umask_not_0600(tmp_path):
    import os
    import stat

    from stic.container import write_bytes_atomic

    previous = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "a.bin", b"x")
        assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640
        os.umask(0o022)
        write_bytes_atomic(tmp_path / "b.bin", b"x")
        assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o644
    finally:
        os.umask(previous)
