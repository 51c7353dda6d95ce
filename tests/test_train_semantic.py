"""Semantic terms: CLIP image-text and CLIP-IQA losses with a tiny random CLIP (gradient path, sign,
masking), caption files and caption-carrying crops, and a run that trains with both terms."""

import json

import numpy as np
import pytest
import torch
from train_helpers import TINY, make_images, one_thread, save_tiny_clip  # noqa: F401 (autouse fixture)

from stic.errors import InputError, ModelNotFoundError
from stic.paths import data_dir
from stic.train.config import TrainConfig
from stic.train.data import CropSampler, captions_per_image, list_images, load_captions
from stic.train.loop import train
from stic.train.semantic import ClipIQA, ClipText, semantic_terms


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def terms(clip_dir):
    weighted = semantic_terms({"clip-text": 1.0, "clip-iqa": 1.0}, str(clip_dir))
    return {t.term.name: t.term for t in weighted}


def test_clip_iqa_rewards_quality_and_is_differentiable(terms):
    iqa = terms["clip-iqa"]
    assert isinstance(iqa, ClipIQA)
    x_hat = torch.rand(2, 3, 48, 48, requires_grad=True)
    p_good = iqa.p_good(x_hat)
    assert bool(((p_good > 0) & (p_good < 1)).all())
    loss = iqa({"x_hat": x_hat}, None)
    assert loss.item() == pytest.approx(-p_good.mean().item(), abs=1e-6)  # minimising it raises p(good)
    loss.backward()
    assert x_hat.grad.abs().sum() > 0
    with torch.no_grad():  # a small step against the loss's gradient makes the images "better"
        stepped = (x_hat - 0.05 * x_hat.grad.sign()).clamp(0, 1)
    assert iqa.p_good(stepped).mean() > p_good.mean()


def test_clip_text_uses_only_captioned_crops(terms):
    text = terms["clip-text"]
    assert isinstance(text, ClipText)
    x_hat = torch.rand(3, 3, 40, 40, requires_grad=True)
    loss = text({"x_hat": x_hat, "captions": ["a red barn", "", "a blue sky"]}, None)
    assert 0 <= loss.item() <= 2
    loss.backward()
    assert x_hat.grad[0].abs().sum() > 0 and x_hat.grad[2].abs().sum() > 0
    assert x_hat.grad[1].abs().sum() == 0  # no caption: not judged
    none = text({"x_hat": x_hat, "captions": ["", "", ""]}, None)
    assert none.item() == 0 and none.requires_grad


def test_missing_clip_weights_and_unknown_terms_say_so(tmp_path):
    with pytest.raises(ModelNotFoundError, match="CLIP weights unavailable offline"):
        semantic_terms({"clip-iqa": 0.1}, str(tmp_path / "no-clip"))
    with pytest.raises(InputError, match="unknown semantic term"):
        semantic_terms({"clip-aesthetics": 0.1}, str(tmp_path / "no-clip"))
    assert semantic_terms({}, str(tmp_path / "no-clip")) == []


def test_caption_files_in_three_formats(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"image": "val/a.jpg", "captions": ["one", "two"]}\n{"image": "b.png", "caption": "three"}\n')
    (tmp_path / "c.json").write_text(json.dumps({"sub/a.jpg": ["one", "two"], "b.png": "three"}))
    (tmp_path / "c.csv").write_text("image,caption\na.jpg,one\na.jpg,two\nb.png,three\n")
    for name in ("c.jsonl", "c.json", "c.csv"):
        assert load_captions(tmp_path / name) == {"a.jpg": ["one", "two"], "b.png": ["three"]}
    with pytest.raises(InputError, match="does not exist"):
        load_captions(tmp_path / "none.jsonl")


def test_crops_carry_a_caption_of_their_own_image_deterministically():
    images = [np.full((40, 40, 3), v, np.uint8) for v in (0, 100, 200)]
    captions = [["black"], ["grey one", "grey two"], []]
    a, b = CropSampler(images, 16, seed=5, captions=captions), CropSampler(images, 16, seed=5, captions=captions)
    crops, chosen = a.batch_with_captions(12)
    again, chosen_again = b.batch_with_captions(12)
    assert torch.equal(crops, again) and chosen == chosen_again
    for crop, caption in zip(crops, chosen):
        expected = {0: ["black"], 100: ["grey one", "grey two"], 200: [""]}[round(float(crop.mean()) * 255)]
        assert caption in expected
    assert len(set(chosen)) > 2  # both grey captions and the empty one show up
    with pytest.raises(InputError, match="caption lists"):
        CropSampler(images, 16, seed=5, captions=captions[:2])


def test_coco_mini_captions_align_with_its_images():
    pairs = data_dir() / "coco_mini" / "pairs.jsonl"
    if not pairs.is_file():
        pytest.skip(f"{pairs} is absent (shared data not mounted)")
    table = load_captions(pairs)
    files = list_images([data_dir() / "coco_mini"])
    assert len(table) == len(files) and all(len(table[f.name]) >= 5 for f in files)
    aligned = captions_per_image(files[:3], table, copies=2)
    assert aligned[0] == aligned[1] == table[files[0].name] and aligned[2] == table[files[1].name]


def test_run_with_semantic_terms(tmp_path, monkeypatch, clip_dir):
    monkeypatch.setenv("STIC_DATA", str(make_images(tmp_path / "data")))
    files = list_images([tmp_path / "data" / "set_a"])
    lines = ["image,caption"] + [f"{p.name},a {'red barn' if i % 2 else 'blue sky'}" for i, p in enumerate(files)]
    (tmp_path / "captions.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), model=TINY, datasets=("set_a",), crop=64, batch=2, val_crop=64, threads=1,
                      max_steps=2, log_every=1, semantic={"clip-text": 0.5, "clip-iqa": 0.5},
                      clip_model=str(clip_dir), captions=str(tmp_path / "captions.csv")))
    curve = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    assert all(0 < c["clip-text"] <= 2 and -1 < c["clip-iqa"] < 0 for c in curve)
    val = json.loads((out / "state.json").read_text())["history"][-1]
    assert "val_clip-iqa" in val and "val_clip-text" in val
