"""Captioners: CLIP token fitting, user text, precomputed CSV/JSON captions, a tiny random VLM."""

import json

import numpy as np
import pytest
from tiny_vlm import save_tiny_llava

from stic.caption.clip_tokens import (
    CLIP_CAPTION_TOKENS,
    clip_token_count,
    clip_tokenizer,
    fit_caption,
)
from stic.caption.fixed import PrecomputedCaptioner, TextCaptioner
from stic.caption.protocol import Captioner
from stic.caption.registry import make_captioner
from stic.caption.vlm import VLMCaptioner
from stic.errors import InputError, ModelNotFoundError
from stic.models.vlm import load_vlm
from stic.paths import data_dir

IMAGE = (np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)


def test_clip_tokenizer_matches_clip_ids():
    # ids of OpenAI CLIP's tokenizer (as used by Stable Diffusion) for a well-known prompt
    assert clip_tokenizer()("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert clip_token_count("a photo of a cat") == 5


def test_short_caption_is_kept():
    fitted = fit_caption("  A red   barn.  ")
    assert fitted.text == "A red barn."
    assert not fitted.truncated and fitted.clip_tokens == 4


def test_long_caption_keeps_whole_sentences():
    first = "A red barn stands in a green field under a cloudy sky."
    text = " ".join([first] * 10)
    fitted = fit_caption(text)
    assert fitted.truncated and fitted.original_clip_tokens == clip_token_count(text) > CLIP_CAPTION_TOKENS
    assert fitted.clip_tokens <= CLIP_CAPTION_TOKENS
    assert fitted.text.endswith(".") and text.startswith(fitted.text)
    assert clip_token_count(fitted.text + " " + first) > CLIP_CAPTION_TOKENS  # as many as fit


def test_sentence_longer_than_window_is_cut_at_a_word():
    text = "word " * 200
    fitted = fit_caption(text, max_tokens=10)
    assert fitted.text == " ".join(["word"] * 10) and fitted.clip_tokens == 10


def test_text_captioner(tmp_path):
    captioner = TextCaptioner("a dog on a porch")
    assert isinstance(captioner, Captioner)
    assert captioner.caption(IMAGE).text == "a dog on a porch"
    with pytest.raises(InputError, match="empty"):
        TextCaptioner("  ")


def test_precomputed_csv_and_json(tmp_path):
    csv_path = tmp_path / "caps.csv"
    csv_path.write_text('image_name,overall_description\nkodim01.png," A door. A wall."\nb.jpg,cat\n')
    captioner = PrecomputedCaptioner(csv_path)
    assert captioner.caption(IMAGE, "some/dir/kodim01.png").text == "A door. A wall."
    assert captioner.caption(IMAGE, "b.png").text == "cat"  # matched by file stem
    with pytest.raises(InputError, match="no caption for zz.png"):
        captioner.caption(IMAGE, "zz.png")
    as_dict = tmp_path / "caps.json"
    as_dict.write_text(json.dumps({"kodim01.png": "a door"}))
    assert PrecomputedCaptioner(as_dict).caption(IMAGE, "kodim01").text == "a door"
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps([{"image": "x.png", "caption": "a cat"}]))
    assert PrecomputedCaptioner(as_list).caption(IMAGE, "x.png").text == "a cat"


def test_bad_caption_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="caption column"):
        PrecomputedCaptioner(bad)
    with pytest.raises(InputError, match="cannot read"):
        PrecomputedCaptioner(tmp_path / "missing.csv")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InputError, match="not a valid caption file"):
        PrecomputedCaptioner(broken)


def test_make_captioner_needs_one_source(tmp_path):
    assert make_captioner() is None
    assert make_captioner(text="hi").caption(IMAGE).text == "hi"
    with pytest.raises(InputError, match="one caption source"):
        make_captioner(text="hi", model="x")


def test_kodak_llava_captions_fit_clip():
    path = data_dir() / "captions" / "kodak_llava15.csv"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path} (set STIC_DATA)")
    captioner = PrecomputedCaptioner(path)
    fitted = [captioner.caption(IMAGE, f"kodim{i:02d}.png") for i in range(1, 25)]
    assert all(0 < f.clip_tokens <= CLIP_CAPTION_TOKENS for f in fitted)
    assert any(f.truncated for f in fitted)  # some published captions overflow CLIP's window


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("llava"))


def test_vlm_captioner_is_deterministic(tiny_vlm_dir):
    captioner = make_captioner(model=str(tiny_vlm_dir))
    assert isinstance(captioner, VLMCaptioner)
    first = captioner.caption(IMAGE)
    assert first.text  # the seeded random model does write something
    assert first.text == captioner.caption(IMAGE).text
    assert first.clip_tokens == clip_token_count(first.text) <= CLIP_CAPTION_TOKENS
    short = VLMCaptioner(load_vlm(str(tiny_vlm_dir)), max_new_tokens=40, max_clip_tokens=5).caption(IMAGE)
    assert short.clip_tokens <= 5


def test_the_captioner_is_placed_and_the_coder_stays_in_float32_on_the_cpu(tiny_vlm_dir):
    import torch

    from stic.models.vlm import cached_vlm

    captioner = make_captioner(model=str(tiny_vlm_dir))  # the CPU's default: bfloat16, half the memory
    assert captioner.vlm.model.dtype == torch.bfloat16 and captioner.caption(IMAGE).text
    assert cached_vlm(str(tiny_vlm_dir)).model.dtype == torch.float32  # what the VLM coder uses
    shared = make_captioner(model=str(tiny_vlm_dir), device="cpu", dtype="float32")
    assert shared.vlm is cached_vlm(str(tiny_vlm_dir))  # one copy when captioner and coder agree
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        make_captioner(model=str(tiny_vlm_dir), device="tpu")


def test_missing_vlm_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="vision-language model"):
        load_vlm(str(tmp_path / "no-such-model"))


def test_a_vlm_folder_given_with_a_tilde_loads(tiny_vlm_dir, monkeypatch):
    from stic.models.vlm import LOADED_VLMS, cached_vlm

    monkeypatch.setenv("HOME", str(tiny_vlm_dir.parent))
    LOADED_VLMS.clear()  # a load, not a cache hit: transformers alone takes "~/..." for a hub id
    assert cached_vlm(f"~/{tiny_vlm_dir.name}") is cached_vlm(str(tiny_vlm_dir))
