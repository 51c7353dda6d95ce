"""Exact entropy parameters for the image models: the integer networks agree with the float ones,
cost no bits, decode to the encoder's latents, and an ulp of float noise changes no symbol."""

import math

import fuzz_cases as fc
import numpy as np
import pytest
import torch

from stic import codecs
from stic.image import exact_entropy as ee
from stic.image.learned import padded_tensor
from stic.image.payload import pack_strings, unpack_strings
from stic.image.registry import load_image_codec


def test_shipped_phi_table_is_the_exact_one():
    shipped = ee._phi_table().tolist()
    assert shipped == ee.phi_table()
    assert shipped[0] == 0 and shipped[1 << 11] == 1 << 15 and shipped[-1] == 1 << 16


def test_integer_activations_match_their_float_forms():
    x = np.arange(-12 << 12, 12 << 12, 53, dtype=np.int64)
    real = torch.from_numpy(x).double() / 4096
    gelu = (real * 0.5 * (1 + torch.erf(real / math.sqrt(2)))).numpy()
    assert np.abs(ee.gelu(x) / 4096 - gelu).max() < 4e-3
    assert np.abs(ee.leaky_relu(x) / 4096 - torch.nn.functional.leaky_relu(real, 0.01).numpy()).max() < 1e-3


@pytest.fixture(scope="module")
def model():
    return load_image_codec("stic-q1").model


def test_checkerboard_halves_and_mask_are_compressais(model):
    y = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    halves = ee.unembed(y[0].numpy())
    assert np.array_equal(halves, model.context.unembed(y)[:, 0].numpy())
    assert np.array_equal(ee.embed(halves), y[0].numpy())
    mask = model.context.context_prediction.mask[0, 0].numpy()
    assert np.array_equal(ee.checkerboard_mask(mask.shape[-1]), mask)


def _strings(model, y, z, step=0):
    return [s[0] for s in model.compress_latents(y, z, step)]


def _decode(model, strings, shape, step=0):
    return torch.from_numpy(ee.LatentDecoder(model.state_arrays()).latents(strings, shape, step))[None]


def _latents(model, seed=0):
    x = padded_tensor(fc.sample_image(128, 192, seed))
    with torch.no_grad():
        y = model.g_a(x)
        return y, model.h_a(y)


def test_integer_networks_follow_the_float_ones(model):
    exact = ee.ExactEntropyParameters(model.state_arrays())
    y, z = _latents(model)
    with torch.no_grad():
        z_hat = model.entropy_bottleneck.decompress(model.entropy_bottleneck.compress(z), z.shape[-2:])
        hyper = model.h_s(z_hat)[0].numpy()
    fixed = exact.hyper(z_hat[0].numpy()) / 4096
    assert np.abs(fixed - hyper).max() < 0.02 * np.abs(hyper).max()


def test_exact_strings_cost_what_float_ones_did_and_decode_to_the_encoders_latents(model):
    y, z = _latents(model, seed=1)
    with torch.no_grad():
        strings = _strings(model, y, z)
        old = [s[0] for s in model.context.compress(y, model.h_s(model.entropy_bottleneck.decompress(
            model.entropy_bottleneck.compress(z), z.shape[-2:])))["strings"]]
    y_hat = _decode(model, strings, z.shape[-2:])
    assert abs(len(strings[0]) + len(strings[1]) - len(old[0]) - len(old[1])) <= 0.02 * (len(old[0]) + len(old[1])) + 2
    assert (y_hat - y).abs().max() <= 0.5 + 1e-4  # each latent rounded about its own mean


def test_quantisation_steps_are_exact_powers_of_two_to_the_sixteenth():
    """STEP_UNITS[s] = floor(2^12 * 2^(-s/16)), checked in integers: D^16 2^s <= 2^192 < (D+1)^16 2^s."""
    assert ee.STEP_UNITS[0] == 4096 and ee.STEP_UNITS[16] == 2048 and ee.STEP_UNITS[48] == 512
    for s, units in enumerate(ee.STEP_UNITS):
        assert units**16 << s <= 1 << 192 < (units + 1) ** 16 << s
    assert all(a > b for a, b in zip(ee.STEP_UNITS, ee.STEP_UNITS[1:]))


@pytest.mark.parametrize("step", [1, 16, 48])
def test_a_finer_step_decodes_to_the_encoders_latents_within_half_a_step(model, step):
    y, z = _latents(model, seed=1)
    with torch.no_grad():
        coarse = _strings(model, y, z)
        strings = _strings(model, y, z, step)
    y_hat = _decode(model, strings, z.shape[-2:], step)
    assert strings[2] == coarse[2]  # z is coded as before
    assert len(strings[0]) + len(strings[1]) >= len(coarse[0]) + len(coarse[1])
    assert (y_hat - y).abs().max() <= 0.5 * ee.STEP_UNITS[step] / 4096 + 1e-4


@pytest.mark.parametrize("step", [0, 24])
def test_ulp_noise_in_the_float_convolutions_changes_no_symbol(model, monkeypatch, step):
    """The integer networks' only float operations are float64 convolutions of small integers; an
    ulp of error in any output (another BLAS, another summation order) must change nothing."""
    y, z = _latents(model, seed=2)
    with torch.no_grad():
        strings = _strings(model, y, z, step)
    clean = _decode(model, strings, z.shape[-2:], step)
    rng = np.random.default_rng(0)
    calls = []

    def noisy(conv):
        def run(*args, **kwargs):
            out = conv(*args, **kwargs)
            calls.append(out.size)
            direction = np.where(rng.random(out.shape) < 0.5, -np.inf, np.inf)
            return np.where(rng.random(out.shape) < 0.5, np.nextafter(out, direction), out)
        return run

    monkeypatch.setattr(ee.array_conv, "conv2d", noisy(ee.array_conv.conv2d))
    monkeypatch.setattr(ee.array_conv, "conv_transpose2d", noisy(ee.array_conv.conv_transpose2d))
    assert torch.equal(_decode(model, strings, z.shape[-2:], step), clean)
    assert len(calls) == 3 + 2 * 3 + 1  # h_s, the MLP on both halves, the context once


def test_shipped_models_write_the_exact_codec_and_still_read_stic_0_1_files(model):
    codec = load_image_codec("stic-q1")
    assert codec.codec_id == codecs.IMAGE_LEARNED_EXACT
    image = fc.sample_image(64, 96, 4)
    data = codec.compress(image)
    decoded = codec.decompress(data, 96, 64)
    assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 40
    # a stic 0.1 section (float entropy parameters) decodes through the float path
    x = padded_tensor(image)
    with torch.no_grad():
        y = model.g_a(x)
        z = model.h_a(y)
        z_strings = model.entropy_bottleneck.compress(z)
        z_hat = model.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        old = [s[0] for s in model.context.compress(y, model.h_s(z_hat))["strings"]] + [z_strings[0]]
    legacy = codec.decompress(pack_strings(old), 96, 64, codecs.IMAGE_LEARNED)
    assert np.abs(legacy.astype(int) - decoded.astype(int)).mean() < 2
    assert len(unpack_strings(data, 3)) == 3


def test_finer_steps_write_their_own_codec_and_more_bits_for_a_closer_picture():
    from stic import pipeline
    from stic.errors import FormatError, InputError
    from stic.fileinfo import describe

    image = fc.sample_image(128, 192, 5)
    plain = pipeline.encode(image, model="stic-q2", refiner=None)
    assert pipeline.encode(image, model="stic-q2", refiner=None, step=0).data == plain.data
    errors, sizes = [], []
    for step in (0, 8, 24):
        encoded = pipeline.encode(image, model="stic-q2", refiner=None, step=step)
        section = describe(encoded.file)["sections"][0]
        assert section["codec"] == ("learned-exact-step" if step else "learned-exact") and section.get("step", 0) == step
        decoded = pipeline.decode(encoded.data).image
        errors.append(np.mean((decoded.astype(float) - image) ** 2))
        sizes.append(len(encoded.data))
    assert sizes[0] < sizes[1] < sizes[2] and errors[0] > errors[1] > errors[2]

    with pytest.raises(InputError, match="steps 0..48, not 49"):
        pipeline.encode(image, model="stic-q2", step=49)
    with pytest.raises(InputError, match="bpp picks the quantisation step itself"):
        pipeline.encode(image, bpp=0.1, step=3)
    codec = load_image_codec("stic-q2")
    payload = codec.compress(image, step=8)
    for bad in (b"\x00", b"\x31"):
        with pytest.raises(FormatError, match="quantisation step"):
            codec.decompress(bad + payload[1:], 192, 128, codecs.IMAGE_LEARNED_EXACT_STEP)
