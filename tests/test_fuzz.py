"""Fuzzing the .stic parser and the decoders (the quick share; bench/fuzz_stic.py runs 100,000+).

Every case must end as a parsed file, a decoded image of the declared size, or a stic error with a
message (tests/fuzz_cases.py: `run_case`).
"""

import random

import fuzz_cases as fc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stic import container as c
from stic import pipeline
from stic.errors import FormatError

FUZZ = settings(max_examples=1500, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="module")
def seeds():
    return fc.make_seeds()


@pytest.fixture(scope="module")
def layouts(seeds):
    return {name: fc.Layout.of(data) for name, data in seeds.items()}


def _assert_clean(outcome: fc.Outcome):
    assert outcome.status in ("parsed", "decoded", "error"), outcome.message


def test_layout_reassembles_every_seed_exactly(seeds, layouts):
    for name, data in seeds.items():
        assert layouts[name].assemble() == data, name


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_random_bytes(data, with_magic):
    if with_magic:
        data = c.MAGIC + bytes([c.VERSION]) + data
    _assert_clean(fc.run_case(data))


@FUZZ
@given(st.integers(0, 2**32), st.integers(1, 3))
def test_stacked_mutations_of_real_files(seeds, layouts, case_seed, rounds):
    rng = random.Random(case_seed)
    name = rng.choice(sorted(seeds))
    _, data = fc.mutate(rng, seeds[name], layouts[name], rounds)
    _assert_clean(fc.run_case(data))


def test_every_truncation_and_bit_flip_is_a_format_error(seeds):
    for seed in seeds.values():
        for cut in range(len(seed)):
            with pytest.raises(FormatError):
                c.unpack(seed[:cut])
        for pos in range(len(seed)):
            for bit in range(8):
                flipped = bytearray(seed)
                flipped[pos] ^= 1 << bit
                with pytest.raises(FormatError):  # header included: the CRCs cover it
                    c.unpack(bytes(flipped))


def test_crc_valid_damage_through_the_full_decoder(seeds, layouts):
    """Damage that passes every container check reaches the caption, image and refine decoders."""
    rng = random.Random(7)
    decode = fc.decoder(refine=True)
    names = sorted(seeds)
    reached = 0
    for i in range(24):
        name = names[i % len(names)]
        mutator = rng.choice(["payload_damage", "declared_size", "section_codec", "section_fingerprint", "section_flags"])
        outcome = fc.run_case(fc.MUTATORS[mutator](rng, seeds[name], layouts[name]), decode, time_limit=60)
        _assert_clean(outcome)
        reached += outcome.reached_decoder
    assert reached >= 10  # the cases really got past the container


@pytest.mark.parametrize("width, height", [(1 << 20, 1 << 20), (8000, 8000), (4097, 4096), (1, 1 << 20), (16385, 1)])
def test_huge_declared_size_is_refused_before_any_model_or_allocation(seeds, layouts, monkeypatch, width, height):
    from dataclasses import replace

    def forbidden(*args, **kwargs):
        raise AssertionError("the decoder must refuse the size before loading or decoding")

    monkeypatch.setattr(pipeline, "resolve_models", forbidden)
    data = replace(layouts["64x48-zlib"], width=c.encode_varint(width), height=c.encode_varint(height)).assemble()
    assert len(data) < 200
    with pytest.raises(FormatError, match=f"declares a {width}x{height} image, above"):
        pipeline.decode(data)


def test_oversized_lengths_and_counts_do_not_allocate(layouts):
    layout = layouts["64x48-zlib"]
    from dataclasses import replace

    for value in (1 << 32, (1 << 63) - 1):
        sections = [replace(layout.sections[0], length=c.encode_varint(value)), *layout.sections[1:]]
        with pytest.raises(FormatError, match="truncated file: section 0 payload needs"):
            c.unpack(replace(layout, sections=sections).assemble())
    with pytest.raises(FormatError, match="over-long varint"):
        c.unpack(replace(layout, count=fc.OVERLONG_VARINT).assemble())
    with pytest.raises(FormatError, match="sections declared"):
        c.unpack(replace(layout, count=c.encode_varint(1 << 40)).assemble())
    extra = len(layout.sections)  # one section more than the file holds
    with pytest.raises(FormatError, match=f"truncated file: section {extra} kind"):
        c.unpack(replace(layout, count=c.encode_varint(extra + 1)).assemble())


@pytest.mark.slow
def test_damaged_lm_captions_through_the_full_decoder():
    """The default LM caption coder (real SmolLM2) on CRC-valid caption damage, with a time limit."""
    from dataclasses import replace

    seeds = {k: v for k, v in fc.make_seeds(with_lm=True).items() if "-lm" in k}
    rng = random.Random(3)
    decode = fc.decoder(refine=False)
    for i in range(16):
        layout = fc.Layout.of(seeds[sorted(seeds)[i % len(seeds)]])
        sections = list(layout.sections)
        index = next(j for j, s in enumerate(sections) if s.flags & c.MAX_KIND == c.SECTION_CAPTION)
        payload = sections[index].payload
        damaged = [fc._flip_bits(rng, payload, rng.randint(1, 4)), payload[: rng.randrange(len(payload))],
                   payload + rng.randbytes(3), rng.randbytes(len(payload))][i % 4]  # fmt: skip
        sections[index] = replace(sections[index], payload=damaged)
        _assert_clean(fc.run_case(replace(layout, sections=sections).assemble(), decode, time_limit=60))
