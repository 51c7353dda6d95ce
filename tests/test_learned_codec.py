"""The learned image codec: payload format, any-size round trips, determinism, registry and the
agreement of real bitstream bits with the forward() likelihood estimate."""

import json
import subprocess
import sys
from urllib.error import URLError

import fuzz_cases as fc
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from stic.codecs import IMAGE_LEARNED
from stic.errors import FormatError, InputError, ModelMismatchError, ModelNotFoundError
from stic.image import registry
from stic.image.architectures import build_model
from stic.image.payload import pack_strings, unpack_strings
from stic.image.registry import codec_for_fingerprint, load_image_codec, shipped_models

TINY = {"architecture": "mbt2018-mean", "N": 8, "M": 8}


@pytest.fixture
def tiny_dir(tmp_path):
    """A randomly initialised tiny model saved the way training runs save theirs."""
    torch.manual_seed(0)
    model = build_model(TINY)
    state = {k: v for k, v in model.state_dict().items() if v.numel() > 0}
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    return tmp_path


def _photo(h=512, w=512):
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:h, :w])


@settings(max_examples=30)
@given(st.lists(st.binary(max_size=300), min_size=2, max_size=2))
def test_strings_pack_unpack(strings):
    assert unpack_strings(pack_strings(strings), 2) == strings


def test_truncated_payload_is_a_format_error():
    payload = pack_strings([b"x" * 200, b"yy"])
    with pytest.raises(FormatError):
        unpack_strings(payload[:50], 2)
    with pytest.raises(FormatError):
        unpack_strings(b"\xff", 2)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 70), (65, 1), (64, 64), (100, 37)])
def test_any_size_round_trips_to_exact_size(tiny_dir, h, w):
    codec = load_image_codec(str(tiny_dir))
    image = np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    payload = codec.compress(image)
    out = codec.decompress(payload, w, h)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_garbage_payloads_decode_or_fail_cleanly(tiny_dir):
    """CompressAI's rANS decoder has no bounds checks; short or random streams must not crash."""
    codec = load_image_codec(str(tiny_dir))
    rng = np.random.default_rng(5)
    for payload in [b"\x00", b"\x02ab", b"\x00abc", rng.bytes(3), rng.bytes(40), rng.bytes(400)]:
        try:
            out = codec.decompress(payload, 70, 50)
        except FormatError:
            continue
        assert out.shape == (50, 70, 3)


def test_codec_identity(tiny_dir):
    codec = load_image_codec(str(tiny_dir))
    assert codec.codec_id == IMAGE_LEARNED
    import hashlib

    assert codec.fingerprint() == hashlib.sha256((tiny_dir / "model.safetensors").read_bytes()).digest()[:4]


def test_rejects_non_rgb_uint8(tiny_dir):
    codec = load_image_codec(str(tiny_dir))
    with pytest.raises(InputError):
        codec.compress(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(InputError):
        codec.compress(np.zeros((8, 8), dtype=np.uint8))


_DECODE_SCRIPT = """
import sys, hashlib, numpy as np
from stic.image.registry import load_image_codec
codec = load_image_codec(sys.argv[1])
payload = open(sys.argv[2], "rb").read()
out = codec.decompress(payload, 96, 80)
print(hashlib.sha256(out.tobytes()).hexdigest())
"""


def test_decode_is_bit_identical_across_runs_and_processes(tiny_dir, tmp_path):
    codec = load_image_codec(str(tiny_dir))
    image = np.random.default_rng(1).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    payload = codec.compress(image)
    first = codec.decompress(payload, 96, 80)
    assert np.array_equal(first, codec.decompress(payload, 96, 80))
    assert codec.compress(image) == payload
    (tmp_path / "payload.bin").write_bytes(payload)
    import hashlib

    digest = subprocess.run(
        [sys.executable, "-c", _DECODE_SCRIPT, str(tiny_dir), str(tmp_path / "payload.bin")],
        capture_output=True, text=True, check=True,
    ).stdout.split()[-1]
    assert digest == hashlib.sha256(first.tobytes()).hexdigest()


def test_unknown_model_names_are_not_found():
    with pytest.raises(ModelNotFoundError, match="shipped models"):
        load_image_codec("no-such-model")
    with pytest.raises(ModelNotFoundError):
        load_image_codec("compressai:not-an-arch:1")
    with pytest.raises(ModelNotFoundError, match="no cheng2020-attn weights for quality 99"):
        load_image_codec("compressai:cheng2020-attn:99")


def test_zoo_offline_is_model_not_found(monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ModelNotFoundError, match="needs internet"):
        load_image_codec("compressai:cheng2020-attn:1")


def test_fingerprint_lookup(tiny_dir):
    tiny = load_image_codec(str(tiny_dir))
    assert codec_for_fingerprint(tiny.fingerprint(), extra=[tiny]) is tiny
    with pytest.raises((ModelMismatchError, ModelNotFoundError), match="deadbeef"):
        codec_for_fingerprint(bytes.fromhex("deadbeef"), extra=[tiny])
    for name in shipped_models():
        assert codec_for_fingerprint(registry.shipped_fingerprint(name)).name == name


def test_shipped_models_cover_three_rates_in_order():
    names = shipped_models()
    assert len(names) >= 3, f"expected at least 3 shipped image models, found {names}"
    image = _photo(256, 384)
    sizes = [len(load_image_codec(name).compress(image)) for name in names]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), dict(zip(names, sizes))


def test_real_bits_match_likelihood_estimate_within_2_percent():
    names = shipped_models()
    if not names:
        pytest.skip("no shipped image model")
    codec = load_image_codec(names[-1])
    image = _photo()
    real_bits = 8 * len(codec.compress(image))
    estimate = codec.estimate_bits(image)
    assert abs(real_bits / estimate - 1) < 0.02, (real_bits, estimate)


def test_shipped_model_reconstructs_a_photo():
    names = shipped_models()
    if not names:
        pytest.skip("no shipped image model")
    codec = load_image_codec(names[-1])
    image = _photo(256, 256)
    out = codec.decompress(codec.compress(image), 256, 256)
    mse = np.mean((out.astype(float) - image) ** 2)
    assert 10 * np.log10(255**2 / mse) > 20


def test_zoo_model_codes_and_decodes_and_is_fingerprinted_by_its_weights(monkeypatch):
    """The zoo's happy path with the download patched: a random bmshj2018-hyperprior stands in for
    the published weights (the real ones need internet)."""
    from compressai.zoo.image import model_architectures

    from stic import pipeline

    torch.manual_seed(0)
    state = model_architectures["bmshj2018-hyperprior"](N=128, M=192).state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kwargs: dict(state))
    spec = "compressai:bmshj2018-hyperprior:1"
    image = fc.sample_image(64, 96, 7)
    encoded = pipeline.encode(image, model=spec, refiner=None)
    assert encoded.image_model == spec
    with pytest.raises(ModelMismatchError, match="stic decode --model"):
        pipeline.decode(encoded.data)  # not a shipped model: the decoder must be told
    assert pipeline.decode(encoded.data, image_model=spec).image.shape == image.shape
    first = load_image_codec(spec).fingerprint()
    state["g_a.0.weight"] = state["g_a.0.weight"] + 1e-3  # same URL, other weights
    assert load_image_codec(spec).fingerprint() != first


def test_cli_decodes_a_file_of_a_model_folder_when_told_the_model(tiny_dir, tmp_path, capsys):
    from PIL import Image

    from stic.cli import main

    Image.fromarray(fc.sample_image(64, 96, 8)).save(tmp_path / "a.png")
    assert main(["encode", str(tmp_path / "a.png"), "--model", str(tiny_dir), "--refiner", "none"]) == 0
    assert main(["decode", str(tmp_path / "a.stic")]) == 1
    assert "stic decode --model" in capsys.readouterr().err
    assert main(["decode", str(tmp_path / "a.stic"), "--model", str(tiny_dir)]) == 0
    assert Image.open(tmp_path / "a.decoded.png").size == (96, 64)
