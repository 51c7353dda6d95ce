"""The exact integer LM engine: its arithmetic, its agreement with the float models it stands
for (tiny random Llama, Qwen2 and Gemma 3), batched == token by token, robustness to ulp noise."""

import decimal
import math

import numpy as np
import pytest
import torch
from tiny_lm import tiny_float_lm, tiny_lm

from stic.text import exact_lm
from stic.text import fixed_point as fp
from stic.text.lm_coder import LMArithmeticCoder

TEXT = "The image features a red barn with a white roof, next to mountains and boats. " * 2
FAMILIES = ["llama", "qwen2", "gemma3"]


@pytest.mark.parametrize("rows", [1, 2, 17, 40])
def test_int8_products_are_exact_on_extreme_and_random_values(rows):
    """Against int64 products, with the largest magnitudes both sides (where a saturating kernel
    would go wrong; tests/test_emulated_cpu.py runs the same on emulated AVX2 and SSE CPUs)."""
    from stic.text.int8_product import Int8Matrix

    rng = np.random.default_rng(rows)
    w = np.concatenate([rng.choice([-127, 127], size=(64, 1536)), rng.integers(-127, 128, size=(64, 1536))])
    q = np.concatenate([rng.choice([-127, 127], size=(rows, 1536)), rng.integers(-127, 128, size=(rows, 1536))])
    w, q = w.astype(np.int8), q.astype(np.int8)
    matrix, expected = Int8Matrix(w), q.astype(np.int64) @ w.T.astype(np.int64)
    for codes in (q, q.astype(np.int64)):  # int8 codes, and the engine's int64 ones
        got = matrix(codes)
        assert got.shape == (2 * rows, 128)
        assert np.array_equal(got, expected)


def test_a_layer_too_wide_for_int32_sums_is_refused():
    from stic.errors import ModelNotFoundError
    from stic.text.int8_product import MAX_IN_FEATURES, Int8Matrix

    with pytest.raises(ModelNotFoundError, match="too wide"):
        Int8Matrix(np.zeros((1, MAX_IN_FEATURES), dtype=np.int8))


def test_exp_table_is_exp_to_one_unit():
    d = np.arange(0, 23 << fp.EXP_IN_BITS, 37, dtype=np.int64)
    expected = np.array([math.exp(-x / 4096) * 2**30 for x in d.tolist()])
    assert np.abs(fp.exp_neg(d) - expected).max() <= 1.5  # two table roundings
    assert fp.exp_neg(np.array([22 << 12, 1 << 40])).tolist() == [0, 0]


def test_exp_table_is_its_two_table_product_everywhere():
    """The lookup table is the product formula the engine used before it (numerics version 1): at
    every argument up to and past the cutoff, and far beyond (masked attention scores)."""
    d = np.r_[np.arange(0, (22 << 12) + 130, dtype=np.int64), 1 << 40, 1 << 61]
    assert np.array_equal(fp.exp_neg(d), fp.exp_neg_product(d))


def test_sigmoid_silu_gelu_match_their_float_forms():
    x = np.arange(-20 << 12, 20 << 12, 97, dtype=np.int64)
    real = x / 4096
    sig = 1 / (1 + np.exp(-real))
    assert np.abs(fp.sigmoid(x, 12) / 2**16 - sig).max() < 2e-5
    assert np.abs(fp.silu(x, 12) / 4096 - real * sig).max() < 1e-3
    gelu = 0.5 * real * (1 + np.tanh(math.sqrt(2 / math.pi) * (real + 0.044715 * real**3)))
    assert np.abs(fp.gelu_tanh(x, 12) / 4096 - gelu).max() < 1e-3


def test_sigmoid_table_is_its_integer_formula_everywhere():
    """The table is the formula the engine used before it (numerics version 1): at every |x|, at
    exp_neg's cutoff, past it (clipped to the table's end) and at other input scales."""
    d = np.r_[np.arange(0, (22 << 12) + 2, 1, dtype=np.int64), 1 << 40]
    for x, bits in ((d, 12), (-d, 12), (d, 16), (-d, 16), (d, 8), (-d, 8)):
        e = fp.exp_neg(fp.shift_round(np.abs(x), fp.EXP_IN_BITS - bits))
        positive = fp.round_div(1 << 46, (1 << 30) + e)
        assert np.array_equal(fp.sigmoid(x, bits), np.where(x >= 0, positive, (1 << 16) - positive))


def test_rope_table_is_exact_cos_sin_and_independent_of_its_length():
    inv_freq = fp.rope_inverse_frequencies(10000.0, 16)
    assert abs(decimal.Decimal(inv_freq[1]) - decimal.Decimal(10000.0 ** (-2 / 16))) < 1e-15
    cos, sin = fp.rope_table(inv_freq, 3000)
    positions = np.arange(3000)[:, None] * np.array([float(f) for f in inv_freq])[None]
    assert np.abs(cos / 2**15 - np.cos(positions)).max() < 1e-4
    assert np.abs(sin / 2**15 - np.sin(positions)).max() < 1e-4
    short = fp.rope_table(inv_freq, 100)
    assert np.array_equal(short[0], cos[:100]) and np.array_equal(short[1], sin[:100])


def test_rms_norm_of_a_zero_row_is_zero():
    x = np.zeros((2, 8), dtype=np.int64)
    x[1] = 1000
    out = fp.rms_norm(x, 16, np.full(8, 1 << 16, dtype=np.int64), fp.fixed_constant(1e-5, 60), 12)
    assert out[0].tolist() == [0] * 8 and (out[1] > 0).all()


def test_rms_norm_and_row_quantisation():
    rng = np.random.default_rng(0)
    for scale in (1, 1 << 10, 1 << 30):  # tiny rows, ordinary rows, rows far beyond 2^24
        x = rng.integers(-scale, scale, (3, 96)).astype(np.int64)
        weight = rng.integers(1 << 14, 1 << 17, 96).astype(np.int64)
        real = x / 2**16
        expected = real * (weight / 2**16) / np.sqrt((real**2).mean(-1, keepdims=True) + 1e-5)
        got = fp.rms_norm(x, 16, weight, fp.fixed_constant(1e-5, 60), 12) / 4096
        assert np.abs(got - expected).max() < 2e-3 * max(1.0, np.abs(expected).max())
        q, scales = fp.quantise_rows(x)
        assert np.abs(q.astype(np.int64)).max() <= 127
        restored = q * np.array([[m << e] for m, e in scales]) / 127
        assert np.abs(restored - x).max() <= np.abs(x).max() / 127


def test_rows_quantise_and_normalise_as_they_would_alone():
    """Many rows (the encoder's batched pass) take the column path, one row (the decoder) the
    scalar one: the same integers, at every peak's bit length and its neighbours."""
    rng = np.random.default_rng(3)
    peaks = [0, 1, 2, 3] + [(1 << k) + d for k in range(2, 46) for d in (-1, 0, 1)]
    x = rng.integers(-1000, 1001, (len(peaks), 64)) * np.array(peaks)[:, None] // 1000  # within +-peak
    x[:, 0] = peaks
    weight = rng.integers(1 << 14, 1 << 17, 64).astype(np.int64)
    eps = fp.fixed_constant(1e-5, 60)
    q, scales = fp.quantise_rows(x)
    normed = fp.rms_norm(x, 16, weight, eps, 12)
    for i, row in enumerate(x):
        q_alone, scale_alone = fp.quantise_rows(row[None])
        assert np.array_equal(q[i], q_alone[0]) and scales[i] == scale_alone[0]
        assert np.array_equal(normed[i], fp.rms_norm(row[None], 16, weight, eps, 12)[0])
    huge = np.array([[(1 << 54) - 1, 5], [(1 << 53) + 1, -7], [1 << 20, 3]], dtype=np.int64)  # past float64's
    q, scales = fp.quantise_rows(huge)
    assert scales == [fp.quantise_rows(row[None])[1][0] for row in huge]


@pytest.mark.parametrize("family", FAMILIES)
def test_exact_engine_agrees_with_the_float_model(family):
    exact, reference = tiny_lm(family=family), tiny_float_lm(family=family, engine="transformers")
    ids = exact.tokenizer.encode(TEXT)
    assert ids == reference.tokenizer.encode(TEXT, add_special_tokens=False)
    assert len(ids) > 10  # longer than Gemma's 5-token window
    logits = exact.decoder.forward(exact_lm.ExactState(exact.decoder, 4), ids) / 4096
    with torch.inference_mode():
        expected = reference.model(input_ids=torch.tensor([ids])).logits[0].double().numpy()
    assert np.abs(logits - expected).mean() < 0.05 * expected.std()
    assert (logits.argmax(-1) == expected.argmax(-1)).mean() >= 0.9


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_pass_equals_token_by_token(family):
    lm = tiny_lm(family=family)
    ids = lm.tokenizer.encode(TEXT)
    batched = lm.decoder.forward(exact_lm.ExactState(lm.decoder, 256), ids)
    state = exact_lm.ExactState(lm.decoder, 2)  # also grows its caches on the way
    stepwise = np.concatenate([lm.decoder.forward(state, [token]) for token in ids])
    assert np.array_equal(batched, stepwise)
    chunks = exact_lm.ExactState(lm.decoder, 2)
    pieces = [lm.decoder.forward(chunks, ids[i : i + 7]) for i in range(0, len(ids), 7)]
    assert np.array_equal(batched, np.concatenate(pieces))


def test_ulp_noise_in_the_remaining_float_products_changes_no_symbol(monkeypatch):
    """The only float operations on the decoding path are float64 products of small integers;
    an ulp of error in any of their outputs (another BLAS, a GPU) must change nothing."""
    lm = tiny_lm(family="gemma3")
    coder = LMArithmeticCoder(lm)
    data = coder.encode(TEXT)
    rng = np.random.default_rng(1)
    matmul = np.matmul

    def noisy(a, b):
        out = matmul(a, b)
        direction = np.where(rng.random(out.shape) < 0.5, -np.inf, np.inf)
        return np.where(rng.random(out.shape) < 0.5, np.nextafter(out, direction), out)

    monkeypatch.setattr(exact_lm.np, "matmul", noisy)
    lm._prefix_memo = None
    assert coder.decode(data) == TEXT


def test_exact_coder_round_trips_and_names_its_codec():
    from stic.codecs import TEXT_LM_EXACT

    coder = LMArithmeticCoder(tiny_lm())
    assert coder.codec_id == TEXT_LM_EXACT and coder.name == "lm:tiny-llama"
    for text in (TEXT, "x", "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich 🚲."):
        assert coder.decode(coder.encode(text)) == text


def test_a_gguf_file_runs_like_the_folder_it_was_converted_from(tmp_path):
    """llama.cpp's layout (permuted Q/K rows, tokenizer in the metadata) read back exactly."""
    from tiny_lm import tiny_folder, tiny_gguf

    from stic.text.exact_model import from_weights
    from stic.text.lm_weights import read_folder, read_gguf

    folder = read_folder(tiny_folder())
    gguf = read_gguf(tiny_gguf(tmp_path / "tiny.gguf"), "tiny")
    for key, tensor in folder.tensors.items():
        np.testing.assert_array_equal(gguf.tensors[key], tensor.astype(np.float32), err_msg=key)
    a, b = from_weights(folder), from_weights(gguf)
    ids = a.tokenizer.encode(TEXT)
    assert b.tokenizer.encode(TEXT) == ids and b.tokenizer.decode(ids) == TEXT
    logits = [m.decoder.forward(exact_lm.ExactState(m.decoder, 4), ids) for m in (a, b)]
    assert np.array_equal(*logits)
