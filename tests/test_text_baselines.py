"""Classical caption coders: exact round trips on odd texts, and every bad stream is a FormatError."""

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stic import codecs
from stic.errors import FormatError, InputError, ModelNotFoundError
from stic.text import baselines as b
from stic.text.protocol import TextCoder

ODD_TEXTS = [
    "",
    " ",
    "a",
    " The image features a red barn with a white roof, surrounded by a lush green field.",
    "emoji 🐈‍⬛🚀👩🏽‍🔬 and flags 🇯🇵",
    "control \x00\x01\x1b[31m\r\n\t\x7f end",
    "日本語のキャプション、Ελληνικά, русский, עברית, العربية",
    "\ufeffBOM and \u200b zero width and combining e\u0301",
    "<|endoftext|><s></s>[INST] special-looking tokens <eos><bos>",
    "x" * 5000,
    "".join(random.Random(7).choice("abc def, ghi.\n😀é") for _ in range(5000)),
]


def _synthetic_corpus(path):
    """A tiny COCO-shaped caption file, enough to train a (small) dictionary quickly."""
    rng = random.Random(0)
    words = "a man woman dog cat sits stands on the in front of red green table street near".split()
    annotations = [
        {"image_id": i // 5, "id": i, "caption": " ".join(rng.choice(words) for _ in range(10))}
        for i in range(2000)
    ]
    path.write_text(json.dumps({"annotations": annotations}))
    return path


@pytest.fixture(scope="module")
def small_dict_coder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    corpus = _synthetic_corpus(folder / "captions.json")
    return b.ZstdDictCoder.from_corpus(corpus, cache=folder / "cache")


def _plain_coders():
    return [b.RawCoder(), b.ZlibCoder(), b.Bz2Coder(), b.LzmaCoder(), b.BrotliCoder(), b.ZstdCoder()]


@pytest.fixture(params=["raw", "zlib", "bz2", "lzma", "brotli", "zstd", "zstd-dict"])
def coder(request, small_dict_coder):
    if request.param == "zstd-dict":
        return small_dict_coder
    return next(c for c in _plain_coders() if c.name == request.param)


def test_coders_follow_the_protocol_and_the_codec_table(coder):
    assert isinstance(coder, TextCoder)
    assert codecs.TEXT_CODEC_NAMES[coder.codec_id] == coder.name
    assert len(coder.fingerprint()) == (4 if coder.name == "zstd-dict" else 0)


@pytest.mark.parametrize("text", ODD_TEXTS, ids=range(len(ODD_TEXTS)))
def test_odd_texts_round_trip(coder, text):
    data = coder.encode(text)
    assert isinstance(data, bytes)
    assert coder.decode(data) == text


def test_compressors_compress_captions(coder):
    caption = ODD_TEXTS[3] * 3
    if coder.name != "raw":
        assert len(coder.encode(caption)) < len(caption.encode())


def test_lone_surrogate_is_an_input_error(coder):
    with pytest.raises(InputError, match="UTF-8"):
        coder.encode("bad \ud800 surrogate")


def test_truncated_and_padded_streams_are_format_errors(coder):
    data = coder.encode(ODD_TEXTS[3])
    if coder.name == "raw":
        data = "é".encode()  # raw has no structure: only invalid UTF-8 can be detected
    for bad in (data[:-1], data[: len(data) // 2]):
        with pytest.raises(FormatError):
            coder.decode(bad)
    if coder.name != "raw":
        with pytest.raises(FormatError):
            coder.decode(data + b"\x00junk")


@pytest.mark.parametrize("garbage", [b"\xff" * 40, bytes(range(256)), b"\x80", b"garbage in"])
def test_garbage_is_a_format_error(coder, garbage):
    if coder.name == "raw" and garbage.isascii():
        pytest.skip("raw UTF-8 has no structure: any valid UTF-8 is a valid stream")
    with pytest.raises(FormatError, match=coder.name):
        coder.decode(garbage)


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_any_bytes_decode_to_text_or_a_format_error(coder, data):
    try:
        assert isinstance(coder.decode(data), str)
    except FormatError:
        pass


@pytest.mark.parametrize("name", ["zlib", "bz2", "lzma", "brotli", "zstd"])
def test_decompression_bombs_are_refused(name):
    coder = next(c for c in _plain_coders() if c.name == name)
    bomb = coder.compress(b"a" * (b.MAX_TEXT_BYTES + 1))
    assert len(bomb) < 100_000
    with pytest.raises(FormatError, match="more than"):
        coder.decode(bomb)


def test_zstd_dict_is_deterministic_cached_and_fingerprinted(tmp_path):
    corpus = _synthetic_corpus(tmp_path / "captions.json")
    first = b.caption_dictionary(corpus, cache=tmp_path / "a")
    assert first == b.caption_dictionary(corpus, cache=tmp_path / "b")  # trained twice, same bytes
    assert list((tmp_path / "a" / "zstd").iterdir())  # cached
    coder = b.ZstdDictCoder(first)
    assert len(coder.fingerprint()) == 4
    other = b.ZstdDictCoder(b.caption_dictionary(_synthetic_corpus(tmp_path / "other.json"), tmp_path / "c"))
    assert other.fingerprint() == coder.fingerprint()  # same corpus content, same dictionary


def test_zstd_dict_without_corpus_is_model_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("STIC_DATA", str(tmp_path / "no-such-folder"))
    with pytest.raises(ModelNotFoundError, match="captions_val2017.json"):
        b.ZstdDictCoder.from_corpus(cache=tmp_path)


def test_zstd_dict_needs_its_own_dictionary(small_dict_coder, tmp_path):
    data = small_dict_coder.encode(ODD_TEXTS[3])
    plain = b.ZstdCoder()
    with pytest.raises(FormatError):
        plain.decode(data)


def test_not_a_dictionary_is_model_not_found():
    with pytest.raises(ModelNotFoundError, match="not a zstd dictionary"):
        b.ZstdDictCoder(b"not a dictionary" * 10)


def test_real_caption_dictionary_beats_plain_zstd(shared_data, tmp_path, monkeypatch):
    corpus = shared_data / b.CAPTION_CORPUS
    if not corpus.is_file():
        pytest.skip(f"caption corpus {corpus} not found")
    coder = b.ZstdDictCoder.from_corpus(corpus, cache=tmp_path)
    caption = ODD_TEXTS[3]
    assert coder.decode(coder.encode(caption)) == caption
    assert len(coder.encode(caption)) < len(b.ZstdCoder().encode(caption)) * 0.8


# --- the published method's scheme: LM token ranks over 8-token windows + zlib ------------------


@pytest.fixture(scope="module")
def rank_coder():
    from tiny_lm import tiny_lm

    from stic.text.rank_coder import RankZlibCoder

    return RankZlibCoder(tiny_lm(seed=0))


@pytest.mark.parametrize("text", ODD_TEXTS[:-2], ids=range(len(ODD_TEXTS) - 2))
def test_rank_coder_round_trips_odd_texts(rank_coder, text):
    assert rank_coder.decode(rank_coder.encode(text)) == text


@pytest.mark.slow  # ~1,500 forward passes each way: transformers' per-call overhead dominates
def test_rank_coder_round_trips_5000_characters(rank_coder):
    text = ODD_TEXTS[-1]
    assert len(text) == 5000
    assert rank_coder.decode(rank_coder.encode(text)) == text


def test_rank_coder_is_a_text_coder(rank_coder):
    assert isinstance(rank_coder, TextCoder)
    assert rank_coder.codec_id == codecs.TEXT_RANK_ZLIB
    assert rank_coder.fingerprint() == rank_coder.lm.fingerprint()


def test_rank_coder_restarts_context_every_8_tokens(rank_coder):
    ids = rank_coder._text_ids(ODD_TEXTS[3])
    assert len(ids) > 16
    ranks = rank_coder.token_ranks(ids)
    assert ranks[8:16] == rank_coder.token_ranks(ids[8:16])  # window 2 sees only itself
    assert ranks[:12] != rank_coder.token_ranks(ids[4:16])[:12] or ranks[4:8] == ranks[8:12]


def test_rank_is_position_in_the_sorted_logits(rank_coder):
    import torch

    session = rank_coder.lm.session(rank_coder._window_start)
    greedy = []
    for _ in range(8):  # the model's own greedy choices all have rank 0
        token = int(torch.argmax(session.logits()))
        greedy.append(token)
        session.push(token)
    assert rank_coder.token_ranks(greedy) == [0] * 8
    order = torch.sort(rank_coder.lm.session(rank_coder._window_start).logits(), descending=True, stable=True)
    assert rank_coder.token_ranks([int(order.indices[5])]) == [5]


def test_rank_stream_is_16_bit_ranks_under_zlib(rank_coder):
    import zlib

    text = ODD_TEXTS[3]
    raw = zlib.decompress(rank_coder.encode(text))
    ids = rank_coder._text_ids(text)
    assert len(raw) == 2 * len(ids)
    assert list(memoryview(raw).cast("H")) == rank_coder.token_ranks(ids)


def test_rank_coder_codes_the_tokenizers_bos_like_the_published_code():
    from tiny_lm import tiny_lm
    from tokenizers import processors

    from stic.text.rank_coder import RankZlibCoder

    lm = tiny_lm(seed=0)
    bos = lm.tokenizer.bos_token_id
    lm.tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos)]
    )
    coder = RankZlibCoder(lm)
    assert coder._added_prefix == [bos]
    text = ODD_TEXTS[3]
    data = coder.encode(text)
    import zlib

    assert len(zlib.decompress(data)) == 2 * (1 + len(coder._text_ids(text)))
    assert coder.decode(data) == text


def test_rank_coder_refuses_bad_streams(rank_coder):
    import zlib

    good = rank_coder.encode(ODD_TEXTS[3])
    vocab = rank_coder.lm.vocab_size
    bad_streams = {
        "random": bytes(random.Random(3).randrange(256) for _ in range(40)),
        "truncated": good[:-3],
        "padded": good + b"\x00",
        "odd length": zlib.compress(b"\x00\x00\x01"),
        "rank beyond vocab": zlib.compress(int(vocab).to_bytes(2, "little")),
        "padding-row token": zlib.compress(rank_coder.token_ranks([vocab - 1])[0].to_bytes(2, "little")),
    }
    assert vocab > len(rank_coder.lm.tokenizer)  # the tiny model has padding rows, as real ones do
    for what, data in bad_streams.items():
        with pytest.raises(FormatError):
            rank_coder.decode(data)
            pytest.fail(what)


def test_rank_coder_refuses_lone_surrogates(rank_coder):
    with pytest.raises(InputError):
        rank_coder.encode("a\udc80b")


def test_token_at_rank_inverts_ranks_with_ties():
    import torch

    from stic.text.rank_coder import _token_at_rank

    logits = torch.tensor([0.5, 2.0, 0.5, -1.0, 2.0, 0.5])
    order = [1, 4, 0, 2, 5, 3]  # descending, ties by ascending id (a stable sort)
    assert [_token_at_rank(logits, r) for r in range(6)] == order
    assert torch.sort(logits, descending=True, stable=True).indices.tolist() == order


def test_large_vocabularies_store_ranks_in_3_bytes():
    import zlib

    from tiny_lm import tiny_lm

    from stic.text.rank_coder import RankZlibCoder

    coder = RankZlibCoder(tiny_lm(seed=2, extra_vocab=70_000))  # > 65,536 logits, like Gemma's 262k
    text = "A red barn."
    data = coder.encode(text)
    assert len(zlib.decompress(data)) == 3 * len(coder._text_ids(text))
    assert coder.decode(data) == text
