"""Training: data handling, composable loss, a tiny run that checkpoints, resumes and exports."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from stic.errors import InputError
from stic.image.losses import MSE255, BitsPerPixel, CompositeLoss, Term, WeightedTerm, rate_distortion
from stic.image.registry import load_image_codec
from stic.train.config import TrainConfig
from stic.train.data import CropSampler, list_images, split
from stic.train.export import export_weights
from stic.train.loop import train

TINY = {"architecture": "mbt2018-mean", "N": 8, "M": 8}


@pytest.fixture
def data(tmp_path, monkeypatch):
    """$STIC_DATA with two small image folders (and a Kodak folder that must never be used)."""
    rng = np.random.default_rng(0)
    for folder, count in (("set_a", 12), ("set_b", 10), ("kodak", 2)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            h, w = rng.integers(40, 120, 2)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / folder / f"{folder}_{i}.png")
    monkeypatch.setenv("STIC_DATA", str(tmp_path))
    return tmp_path


def test_kodak_is_refused(data):
    with pytest.raises(InputError, match="Kodak"):
        list_images([data / "set_a", data / "kodak"])


def test_validation_split_is_stable_and_disjoint(data):
    files = list_images([data / "set_a", data / "set_b"])
    train_a, val_a = split(files, every=4)
    train_b, val_b = split(list(reversed(files)), every=4)
    assert sorted(val_a) == sorted(val_b) and val_a
    assert not set(train_a) & set(val_a) and len(train_a) + len(val_a) == len(files)


def test_crops_are_reproducible_and_pad_small_images():
    images = [np.full((20, 30, 3), 7, np.uint8), np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)]
    a, b = CropSampler(images, 32, seed=3), CropSampler(images, 32, seed=3)
    state = a.state()
    first = a.batch(4)
    assert first.shape == (4, 3, 32, 32) and torch.equal(first, b.batch(4))
    a.set_state(state)
    assert torch.equal(first, a.batch(4))


def test_loss_is_a_weighted_sum_of_terms():
    class Constant(Term):
        name = "const"

        def __call__(self, output, target):
            return torch.tensor(2.0)

    x = torch.rand(1, 3, 16, 16)
    output = {"x_hat": x + 0.1, "likelihoods": {"y": torch.full((1, 4, 2, 2), 0.5)}}
    loss, values = CompositeLoss([WeightedTerm(1.0, BitsPerPixel()), WeightedTerm(0.5, MSE255()), WeightedTerm(3.0, Constant())])(output, x)
    assert values["bpp"].item() == pytest.approx(16 / 256)
    assert values["mse"].item() == pytest.approx(0.01 * 255**2, rel=1e-4)
    assert loss.item() == pytest.approx(16 / 256 + 0.5 * 0.01 * 255**2 + 6.0, rel=1e-4)
    rd_loss, _ = rate_distortion(0.01)(output, x)
    assert rd_loss.item() == pytest.approx(16 / 256 + 0.01 * 0.01 * 255**2, rel=1e-4)
    x = torch.rand(1, 3, 64, 64)  # large enough for AlexNet's pooling
    output = {"x_hat": (x + 0.1).clamp(0, 1), "likelihoods": {"y": torch.full((1, 4, 2, 2), 0.5)}}
    rd_loss, _ = rate_distortion(0.01)(output, x)
    perceptual_loss, values = rate_distortion(0.01, {"lpips-alex": 2.0})(output, x)
    assert values["lpips-alex"].item() > 0
    assert perceptual_loss.item() == pytest.approx(rd_loss.item() + 2.0 * values["lpips-alex"].item(), rel=1e-4)


def test_tiny_run_checkpoints_resumes_and_exports(data, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(out=str(out), model=TINY, datasets=("set_a", "set_b"), crop=64, batch=2,
                      max_steps=3, val_crop=64, threads=1)
    train(cfg)
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 3 and state["history"][-1]["val_bpp"] > 0
    assert "step" in (out / "train.log").read_text()

    cfg.max_steps = 5
    train(cfg)
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 5
    assert "resumed at step 3" in (out / "train.log").read_text()

    weights = export_weights(out, "tiny", tmp_path / "shipped")
    assert json.loads((tmp_path / "shipped" / "tiny.json").read_text())["training"]["steps"] == 5
    (tmp_path / "as_dir").mkdir()
    (tmp_path / "as_dir" / "model.safetensors").write_bytes(weights.read_bytes())
    (tmp_path / "as_dir" / "config.json").write_text((tmp_path / "shipped" / "tiny.json").read_text())
    codec = load_image_codec(str(tmp_path / "as_dir"))
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert codec.decompress(codec.compress(image), 50, 40).shape == (40, 50, 3)


def test_fine_tune_starts_from_another_run(data, tmp_path):
    base = tmp_path / "base"
    train(TrainConfig(out=str(base), model=TINY, datasets=("set_a",), crop=64, batch=2, max_steps=2, val_crop=64, threads=1))
    tuned = tmp_path / "tuned"
    train(TrainConfig(out=str(tuned), model=TINY, datasets=("set_a",), crop=64, batch=2, max_steps=1, val_crop=64,
                      threads=1, init_from=str(base), lmbda=0.01))
    assert "initialised from" in (tuned / "train.log").read_text()


def test_fine_tune_starts_from_a_shipped_model(data, tmp_path):
    from safetensors.torch import load_file

    from stic.errors import ModelNotFoundError
    from stic.image.registry import weights_dir

    shipped = json.loads((weights_dir() / "stic-q1.json").read_text())["model"]
    tuned = tmp_path / "tuned"
    train(TrainConfig(out=str(tuned), model=shipped, datasets=("set_a",), crop=64, batch=2, max_steps=1, val_crop=64,
                      threads=1, init_from="stic-q1", decoder_from="stic-p1", lr=0.0))
    start = {name: load_file(str(weights_dir() / f"{name}.safetensors")) for name in ("stic-q1", "stic-p1")}
    weights = load_file(str(tuned / "model.safetensors"))
    for key in ("g_a.0.weight", "h_s.0.weight", "g_s.0.weight"):
        source = start["stic-p1" if key.startswith("g_s.") else "stic-q1"][key]
        assert weights[key].dtype == torch.float32 and torch.equal(weights[key], source.float()), key
    assert not torch.equal(start["stic-q1"]["g_s.0.weight"], start["stic-p1"]["g_s.0.weight"])

    with pytest.raises(ModelNotFoundError, match="neither a run folder nor a shipped model"):
        train(TrainConfig(out=str(tmp_path / "typo"), model=shipped, datasets=("set_a",), crop=64, batch=2,
                          max_steps=1, val_crop=64, threads=1, init_from="stic-q9"))
    with pytest.raises(RuntimeError, match="weights of stic-q1 do not fit"):
        train(TrainConfig(out=str(tmp_path / "small"), model=TINY, datasets=("set_a",), crop=64, batch=2,
                          max_steps=1, val_crop=64, threads=1, init_from="stic-q1"))


def test_decoder_from_takes_the_synthesis_transform_of_another_run(data, tmp_path):
    from safetensors.torch import load_file

    runs = {}
    for name, seed in (("encoder", 0), ("decoder", 1)):
        runs[name] = tmp_path / name
        train(TrainConfig(out=str(runs[name]), model=TINY, datasets=("set_a",), crop=64, batch=2, max_steps=2,
                          val_crop=64, threads=1, seed=seed, lr=1e-2))
    mixed = tmp_path / "mixed"
    train(TrainConfig(out=str(mixed), model=TINY, datasets=("set_a",), crop=64, batch=2, max_steps=1, val_crop=64,
                      threads=1, init_from=str(runs["encoder"]), decoder_from=str(runs["decoder"]), lr=0.0,
                      trainable="decoder"))
    weights = {name: load_file(str(folder / "model.safetensors")) for name, folder in {**runs, "mixed": mixed}.items()}
    for key, value in weights["mixed"].items():
        source = "decoder" if key.startswith("g_s.") else "encoder"
        assert torch.equal(value, weights[source][key]), key
    assert any(not torch.equal(weights["encoder"][k], weights["decoder"][k]) for k in weights["mixed"] if k.startswith("g_s."))

    other = tmp_path / "other"
    train(TrainConfig(out=str(other), model={**TINY, "N": TINY["N"] * 2}, datasets=("set_a",), crop=64, batch=2,
                      max_steps=1, val_crop=64, threads=1))
    with pytest.raises(InputError, match="decoder_from needs init_from"):
        train(TrainConfig(out=str(tmp_path / "alone"), model=TINY, datasets=("set_a",), crop=64, batch=2, max_steps=1,
                          val_crop=64, threads=1, decoder_from=str(runs["decoder"])))
    assert not (tmp_path / "alone").exists()
    with pytest.raises(RuntimeError, match="decoder of .*other does not fit"):
        train(TrainConfig(out=str(tmp_path / "bad"), model=TINY, datasets=("set_a",), crop=64, batch=2, max_steps=1,
                          val_crop=64, threads=1, init_from=str(runs["encoder"]), decoder_from=str(other)))


def test_decoder_only_perceptual_tuning_keeps_the_bitstream(data, tmp_path):
    base = tmp_path / "base"
    train(TrainConfig(out=str(base), model=TINY, datasets=("set_a",), crop=64, batch=2, max_steps=2, val_crop=64, threads=1))
    tuned = tmp_path / "tuned"
    train(TrainConfig(out=str(tuned), model=TINY, datasets=("set_a",), crop=64, batch=2, max_steps=3, val_crop=64,
                      threads=1, init_from=str(base), lr=1e-2, perceptual={"lpips-alex": 1.0}, trainable="decoder"))
    history = json.loads((tuned / "state.json").read_text())["history"]
    assert history[-1]["val_lpips-alex"] > 0

    codecs = {}
    for run in (base, tuned):
        export_weights(run, run.name, tmp_path / "shipped")
        folder = tmp_path / f"{run.name}_dir"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes((tmp_path / "shipped" / f"{run.name}.safetensors").read_bytes())
        (folder / "config.json").write_text((tmp_path / "shipped" / f"{run.name}.json").read_text())
        codecs[run.name] = load_image_codec(str(folder))
    image = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    bits = codecs["base"].compress(image)
    assert codecs["tuned"].compress(image) == bits  # same encoder and entropy model
    assert not np.array_equal(codecs["tuned"].decompress(bits, 96, 64), codecs["base"].decompress(bits, 96, 64))


def test_unknown_trainable_part_is_refused(data, tmp_path):
    with pytest.raises(ValueError, match="trainable"):
        train(TrainConfig(out=str(tmp_path / "r"), model=TINY, datasets=("set_a",), crop=64, batch=2, max_steps=1,
                          val_crop=64, threads=1, trainable="encoder"))
