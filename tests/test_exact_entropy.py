"""Exact entropy parameters for the image models: the integer networks agree with the float ones,
cost no bits, decode to the encoder's latents, and an ulp of float noise changes no symbol."""

import math

import numpy as np
import pytest
import torch
import fuzz_cases as fc

from stic import codecs
from stic.image import exact_entropy as ee
from stic.image.learned import pack_strings, to_tensor, unpack_strings
from stic.image.registry import load_image_codec


def test_shipped_phi_table_is_the_exact_one():
    shipped = ee._phi_table().tolist()
    assert shipped == ee.phi_table()
    assert shipped[0] == 0 and shipped[1 << 11] == 1 << 15 and shipped[-1] == 1 << 16


def test_integer_activations_match_their_float_forms():
    x = torch.arange(-12 << 12, 12 << 12, 53, dtype=torch.int64)
    real = x.double() / 4096
    gelu = real * 0.5 * (1 + torch.erf(real / math.sqrt(2)))
    assert (ee.gelu(x).double() / 4096 - gelu).abs().max() < 4e-3
    assert (ee.leaky_relu(x).double() / 4096 - torch.nn.functional.leaky_relu(real, 0.01)).abs().max() < 1e-3


@pytest.fixture(scope="module")
def model():
    return load_image_codec("stic-q1").model


def _latents(model, seed=0):
    x = to_tensor(fc.sample_image(128, 192, seed))
    with torch.no_grad():
        y = model.g_a(x)
        return y, model.h_a(y)


def test_integer_networks_follow_the_float_ones(model):
    exact = ee.ExactEntropyParameters(model)
    y, z = _latents(model)
    with torch.no_grad():
        z_hat = model.entropy_bottleneck.decompress(model.entropy_bottleneck.compress(z), z.shape[-2:])
        hyper = model.h_s(z_hat)
    fixed = exact.hyper(z_hat).double() / 4096
    assert (fixed - hyper).abs().max() < 0.02 * hyper.abs().max()


def test_exact_strings_cost_what_float_ones_did_and_decode_to_the_encoders_latents(model):
    exact = ee.ExactEntropyParameters(model)
    y, z = _latents(model, seed=1)
    with torch.no_grad():
        strings = ee.compress_latents(model, exact, y, z)
        old = [s[0] for s in model.context.compress(y, model.h_s(model.entropy_bottleneck.decompress(
            model.entropy_bottleneck.compress(z), z.shape[-2:])))["strings"]]
        y_hat = ee.decompress_latents(model, exact, strings, z.shape[-2:])
    assert abs(len(strings[0]) + len(strings[1]) - len(old[0]) - len(old[1])) <= 0.02 * (len(old[0]) + len(old[1])) + 2
    assert (y_hat - y).abs().max() <= 0.5 + 1e-4  # each latent rounded about its own mean


def test_ulp_noise_in_the_float_convolutions_changes_no_symbol(model, monkeypatch):
    """The integer networks' only float operations are float64 convolutions of small integers; an
    ulp of error in any output (another BLAS, oneDNN or not, a GPU) must change nothing."""
    exact = ee.ExactEntropyParameters(model)
    y, z = _latents(model, seed=2)
    with torch.no_grad():
        strings = ee.compress_latents(model, exact, y, z)
        clean = ee.decompress_latents(model, exact, strings, z.shape[-2:])
    generator = torch.Generator().manual_seed(0)

    def noisy(conv):
        def run(*args, **kwargs):
            out = conv(*args, **kwargs)
            direction = torch.where(torch.rand(out.shape, generator=generator) < 0.5, -math.inf, math.inf).double()
            return torch.where(torch.rand(out.shape, generator=generator) < 0.5, torch.nextafter(out, direction), out)
        return run

    monkeypatch.setattr(ee.F, "conv2d", noisy(torch.nn.functional.conv2d))
    monkeypatch.setattr(ee.F, "conv_transpose2d", noisy(torch.nn.functional.conv_transpose2d))
    with torch.no_grad():
        assert torch.equal(ee.decompress_latents(model, exact, strings, z.shape[-2:]), clean)


def test_shipped_models_write_the_exact_codec_and_still_read_stic_0_1_files(model):
    codec = load_image_codec("stic-q1")
    assert codec.codec_id == codecs.IMAGE_LEARNED_EXACT
    image = fc.sample_image(64, 96, 4)
    data = codec.compress(image)
    decoded = codec.decompress(data, 96, 64)
    assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 40
    # a stic 0.1 section (float entropy parameters) decodes through the float path
    x = to_tensor(image)
    with torch.no_grad():
        y = model.g_a(x)
        z = model.h_a(y)
        z_strings = model.entropy_bottleneck.compress(z)
        z_hat = model.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        old = [s[0] for s in model.context.compress(y, model.h_s(z_hat))["strings"]] + [z_strings[0]]
    legacy = codec.decompress(pack_strings(old), 96, 64, codecs.IMAGE_LEARNED)
    assert np.abs(legacy.astype(int) - decoded.astype(int)).mean() < 2
    assert len(unpack_strings(data, 3)) == 3
