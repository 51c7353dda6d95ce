"""Diffusion refiner with a tiny random pipeline: every setting the file stores changes the pixels,
the same file decodes identically twice, and a missing or different model is a clear error."""

import numpy as np
import pytest
from refine_helpers import tiny_img2img_pipeline

from stic import codecs
from stic.container import SECTION_REFINE, pack, unpack
from stic.errors import FormatError, InputError, ModelMismatchError, ModelNotFoundError
from stic.refine import registry
from stic.refine.diffusion import DiffusionRefiner, DiffusionSettings
from stic.refine.protocol import Refiner

pytest.importorskip("diffusers")

CAPTION = "a red barn in a green field"
BASE = DiffusionSettings(strength=0.5, guidance_scale=7.5, steps=2)


def _image(shape=(32, 32, 3)) -> np.ndarray:
    return (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pipe():
    return tiny_img2img_pipeline()


@pytest.fixture(scope="module")
def reference(pipe):
    return DiffusionRefiner(pipe, BASE).refine(_image(), CAPTION, seed=1)


def _with(pipe, **changes) -> DiffusionRefiner:
    return DiffusionRefiner(pipe, DiffusionSettings(**{**BASE.__dict__, **changes}))


def test_output_is_an_image_of_the_same_size(pipe, reference):
    refiner = DiffusionRefiner(pipe, BASE)
    assert isinstance(refiner, Refiner) and refiner.refiner_id == codecs.REFINE_DIFFUSION_IMG2IMG
    assert reference.shape == (32, 32, 3) and reference.dtype == np.uint8
    assert not np.array_equal(reference, _image())


def test_same_seed_same_pixels_other_seed_other_pixels(pipe, reference):
    assert np.array_equal(DiffusionRefiner(pipe, BASE).refine(_image(), CAPTION, seed=1), reference)
    assert not np.array_equal(DiffusionRefiner(pipe, BASE).refine(_image(), CAPTION, seed=2), reference)


@pytest.mark.parametrize(
    "change",
    [{"guidance_scale": 1.0}, {"guidance_scale": 12.0}, {"negative_prompt": "blurry, low quality"}, {"strength": 1.0}],
)
def test_each_setting_changes_the_output(pipe, reference, change):
    assert not np.array_equal(_with(pipe, **change).refine(_image(), CAPTION, seed=1), reference)


def test_caption_changes_the_output(pipe, reference):
    assert not np.array_equal(DiffusionRefiner(pipe, BASE).refine(_image(), "", seed=1), reference)


def test_large_images_are_tiled(pipe):
    refiner = DiffusionRefiner(pipe, BASE)
    assert refiner.tile == 32
    image = _image((37, 44, 3))  # neither side a multiple of 8, both larger than a tile
    out = refiner.refine(image, CAPTION, seed=3)
    assert out.shape == image.shape and not np.array_equal(out, image)


def test_settings_round_trip_and_validation():
    settings = DiffusionSettings(strength=0.35, guidance_scale=6.5, steps=25, negative_prompt="blurry 😀")
    assert DiffusionSettings.from_bytes(settings.to_bytes()) == settings
    assert len(DiffusionSettings().to_bytes()) == 3
    with pytest.raises(FormatError):
        DiffusionSettings.from_bytes(b"\x80")
    with pytest.raises(InputError, match="strength"):
        DiffusionSettings(strength=0)
    with pytest.raises(InputError, match="strength"):
        DiffusionSettings(strength=0.004)  # would be stored as 0
    with pytest.raises(InputError, match="steps x strength"):
        DiffusionSettings(strength=0.2, steps=4)  # int(0.8) = 0 denoising steps
    rounded = DiffusionSettings(strength=0.347, guidance_scale=6.54)
    assert (rounded.strength, rounded.guidance_scale) == (0.35, 6.5)  # what a decoder reads back
    assert DiffusionSettings.from_bytes(rounded.to_bytes()) == rounded
    with pytest.raises(FormatError, match="diffusion parameters"):
        DiffusionSettings.from_bytes(b"\x01\x32\x01")  # strength 0.01 x 1 step: nothing to run


def test_seeds_beyond_the_generator_range_are_refused(pipe):
    refiner = DiffusionRefiner(pipe, BASE)
    with pytest.raises(InputError, match="seed"):
        registry.refine_section(refiner, seed=1 << 48)
    section = registry.refine_section(refiner, seed=(1 << 48) - 1)
    from stic.container import Section, encode_varint

    forged = Section(section.kind, section.codec_id, encode_varint(1 << 60) + refiner.params(), section.fingerprint, False)
    with pytest.raises(FormatError, match="seed"):
        registry.refiner_for_section(forged)


def test_file_decodes_identically_through_a_saved_model(pipe, tmp_path):
    folder = tmp_path / "tiny-sd"
    pipe.save_pretrained(folder)
    refiner = registry.get_refiner(f"diffusion:{folder}", settings=BASE)
    section = registry.refine_section(refiner, seed=9)
    parsed = unpack(pack(32, 32, [section])).section(SECTION_REFINE)
    first, seed = registry.refiner_for_section(parsed, model=str(folder))
    assert seed == 9 and first.settings == BASE
    a = first.refine(_image(), CAPTION, seed)
    b = registry.refiner_for_section(parsed, model=str(folder))[0].refine(_image(), CAPTION, seed)
    assert np.array_equal(a, b)
    assert np.array_equal(a, DiffusionRefiner(pipe, BASE).refine(_image(), CAPTION, 9))


def test_missing_or_different_model_is_a_clear_error(pipe, tmp_path, monkeypatch):
    section = registry.refine_section(DiffusionRefiner(pipe, BASE), seed=0)
    with pytest.raises(ModelNotFoundError, match="--no-refine"):
        registry.refiner_for_section(section, model=str(tmp_path / "absent"))
    other = tmp_path / "other"
    tiny_img2img_pipeline(seed=1).save_pretrained(other)
    monkeypatch.setenv("STIC_DIFFUSION_MODEL", str(other))
    with pytest.raises(ModelMismatchError, match="refiner-model"):
        registry.refiner_for_section(section)


def test_tiles_blend_across_the_whole_overlap():
    from stic.refine.diffusion import _ramps, _starts

    starts = _starts(88, 32)
    ramps = _ramps(starts, 32)
    total = np.zeros(88)
    for start, ramp in zip(starts, ramps, strict=True):
        total[start : start + 32] += ramp
    assert np.allclose(total, 1)  # neighbours hand over smoothly, nowhere a flat average
    overlap = starts[0] + 32 - starts[1]
    rise = ramps[1][:overlap]
    assert np.all(np.diff(rise) > 0) and rise[0] < 0.1 and rise[-1] > 0.9


def test_small_images_are_refined_at_the_native_size(pipe, monkeypatch):
    refiner = DiffusionRefiner(pipe, BASE)
    seen = []
    run = refiner._run
    monkeypatch.setattr(refiner, "_run", lambda crop, *rest: seen.append(crop.shape) or run(crop, *rest))
    out = refiner.refine(_image((16, 24, 3)), CAPTION, seed=1)
    assert out.shape == (16, 24, 3) and seen == [(32, 32, 3)] * 2  # enlarged to 32x48: two native tiles


@pytest.mark.parametrize("family", ["sdxl", "turbo"])
def test_sdxl_and_turbo_pipelines_refine_deterministically(family):
    from refine_helpers import tiny_sdxl_img2img_pipeline, tiny_turbo_img2img_pipeline

    pipe = {"sdxl": tiny_sdxl_img2img_pipeline, "turbo": tiny_turbo_img2img_pipeline}[family]()
    settings = DiffusionSettings(strength=0.5, guidance_scale=0.0 if family == "turbo" else 5.0, steps=2)
    image = _image((40, 48, 3))
    out = DiffusionRefiner(pipe, settings).refine(image, CAPTION, seed=1)
    assert out.shape == image.shape and not np.array_equal(out, image)
    assert np.array_equal(DiffusionRefiner(pipe, settings).refine(image, CAPTION, seed=1), out)


def test_the_fingerprint_covers_sdxls_second_text_encoder():
    import torch
    from refine_helpers import tiny_sdxl_img2img_pipeline

    from stic.refine.diffusion import pipeline_fingerprint

    pipe = tiny_sdxl_img2img_pipeline()
    before = pipeline_fingerprint(pipe)
    with torch.no_grad():
        pipe.text_encoder_2.text_projection.weight.mul_(2)
    assert pipeline_fingerprint(pipe) != before


def test_transformer_pipelines_are_refused_in_one_line():
    class SD3Like:  # what AutoPipelineForImage2Image gives for SD3 or Flux: a transformer, no unet
        transformer = object()

    with pytest.raises(InputError, match="SD3Like: the diffusion refiner runs UNet pipelines"):
        DiffusionRefiner(SD3Like())


def test_load_pipeline_places_the_model(pipe, tmp_path):
    import torch

    from stic.refine.diffusion import load_pipeline

    pipe.save_pretrained(tmp_path / "tiny")
    loaded = load_pipeline(str(tmp_path / "tiny"), "cpu", "bfloat16")
    assert loaded.unet.dtype == torch.bfloat16 and loaded.unet.device.type == "cpu"
    assert load_pipeline(str(tmp_path / "tiny")).unet.dtype == torch.float32  # the CPU's default
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU is visible"):
            load_pipeline(str(tmp_path / "tiny"), "cuda")
    with pytest.raises(InputError, match="unknown dtype 'int8'"):
        load_pipeline(str(tmp_path / "tiny"), "cpu", "int8")


def test_the_fingerprint_reads_behaviour_by_name_and_files_with_the_old_one_still_decode(monkeypatch):
    from stic.container import Section
    from stic.refine.diffusion import legacy_pipeline_fingerprint, pipeline_fingerprint
    from stic.refine.registry import refiner_for_section

    pipe = tiny_img2img_pipeline()
    before, legacy = pipeline_fingerprint(pipe), legacy_pipeline_fingerprint(pipe)
    pipe.unet.register_to_config(some_future_attribute=1)  # a diffusers release adds an attribute
    pipe.scheduler.register_to_config(another_new_setting="x")
    assert pipeline_fingerprint(pipe) == before
    assert legacy_pipeline_fingerprint(pipe) != legacy  # what the old fingerprint got wrong
    scaling = pipe.vae.config.scaling_factor
    pipe.vae.register_to_config(scaling_factor=0.5)  # changes the pixels for the same weights
    assert pipeline_fingerprint(pipe) != before
    pipe.vae.register_to_config(scaling_factor=scaling)
    assert pipeline_fingerprint(pipe) == before

    refiner = DiffusionRefiner(pipe, DiffusionSettings(steps=2, strength=0.5))
    for fingerprint in (refiner.fingerprint(), refiner.legacy_fingerprint()):
        section = Section(SECTION_REFINE, refiner.refiner_id, b"\x07" + refiner.params(), fingerprint, False)
        rebuilt, seed = refiner_for_section(section, held=refiner)
        assert rebuilt.pipe is pipe and seed == 7
    monkeypatch.setattr(registry, "_pipeline", lambda *args: pipe)
    forged = Section(SECTION_REFINE, refiner.refiner_id, b"\x07" + refiner.params(), b"\0\0\0\0", False)
    with pytest.raises(ModelMismatchError):
        refiner_for_section(forged, held=refiner)
