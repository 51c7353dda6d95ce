"""Adversarial term: the conditional patch discriminator, its losses and warm-up, and runs that
save, resume and keep the bitstream when only the decoder learns."""

import json

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import TINY, make_images, one_thread  # noqa: F401 (autouse fixture)

from stic.train.adversarial import (
    Adversarial,
    PatchDiscriminator,
    discriminator_loss,
    generator_loss,
)
from stic.train.config import TrainConfig
from stic.train.loop import train


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("STIC_DATA", str(make_images(tmp_path)))
    return tmp_path


def test_discriminator_gives_patch_logits_conditioned_on_the_latent():
    torch.manual_seed(0)
    net = PatchDiscriminator(latent_channels=8, channels=4)
    image, latent = torch.rand(2, 3, 64, 64), torch.randn(2, 8, 4, 4)
    logits = net(image, latent)
    assert logits.shape == (2, 1, 8, 8)
    assert not torch.allclose(logits, net(image, torch.randn(2, 8, 4, 4)))  # the latent matters


def test_losses_are_the_standard_ones():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    softplus = torch.nn.functional.softplus
    assert discriminator_loss(real, fake, "nonsaturating") == pytest.approx(
        float(softplus(-real).mean() + softplus(fake).mean()))
    assert discriminator_loss(real, fake, "hinge") == pytest.approx((0 + 2) / 2 + (1.5 + 0) / 2)
    assert generator_loss(fake, "hinge") == pytest.approx(1.25)
    assert generator_loss(fake, "nonsaturating") == pytest.approx(float(softplus(-fake).mean()))
    with pytest.raises(ValueError, match="adversarial loss"):
        Adversarial(8, 1.0, 0, loss="wasserstein")


def test_discriminator_learns_and_generator_gradient_reaches_only_the_image():
    torch.manual_seed(0)
    gan = Adversarial(latent_channels=8, weight=0.5, warmup=3, channels=4, lr=1e-3)
    assert [gan.weight_at(s) for s in (0, 2, 3, 10)] == [0.0, 0.0, 0.5, 0.5]
    real = torch.rand(4, 3, 32, 32)
    fake = torch.full((4, 3, 32, 32), 0.5)  # flat: easy to tell from the real crops
    latent = torch.randn(4, 8, 2, 2)
    losses = [float(gan.discriminator_step(real, fake, latent)) for _ in range(25)]
    assert losses[-1] < 0.7 * losses[0]
    gan.optimizer.zero_grad(set_to_none=True)
    x_hat = fake.clone().requires_grad_(True)
    gan.generator_term(x_hat, latent).backward()
    assert x_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in gan.discriminator.parameters())


def _cfg(out, **kw):
    base = {"out": str(out), "model": TINY, "datasets": ("set_a",), "crop": 64, "batch": 2, "val_crop": 64,
            "threads": 1, "log_every": 1}
    return TrainConfig(**(base | kw))


def _g_s(run):
    return {k: v for k, v in load_file(str(run / "model.safetensors")).items() if k.startswith("g_s.")}


def test_decoder_only_adversarial_run_saves_resumes_and_respects_the_warm_up(data, tmp_path):
    base = tmp_path / "base"
    train(_cfg(base, max_steps=2))
    # an old checkpoint without a discriminator resumes with the term switched on
    tuned = tmp_path / "tuned"
    train(_cfg(tuned, max_steps=2, init_from=str(base), trainable="decoder", lr=1e-2))
    assert not (tuned / "discriminator.safetensors").exists()
    gan = {"adversarial": 0.5, "adversarial_warmup": 3, "disc_channels": 4, "trainable": "decoder", "lr": 1e-2,
           "init_from": str(base), "perceptual": {"lpips-alex": 1.0}}
    train(_cfg(tuned, max_steps=4, **gan))
    assert "resumed at step 2" in (tuned / "train.log").read_text()
    assert set(torch.load(tuned / "optim.pt", weights_only=True)) == {"main", "discriminator"}
    saved_d = load_file(str(tuned / "discriminator.safetensors"))
    curve = [json.loads(line) for line in (tuned / "losses.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curve] == [1, 2, 3, 4] and all("adv_d" in c and "adv_g" in c for c in curve[2:])

    train(_cfg(tuned, max_steps=5, **gan))  # resumes the discriminator and its optimizer
    assert "resumed at step 4" in (tuned / "train.log").read_text()
    resumed_d = load_file(str(tuned / "discriminator.safetensors"))
    assert any(not torch.equal(saved_d[k], resumed_d[k]) for k in saved_d)  # it kept learning

    # only the synthesis transform moved: the bitstream of the init model is kept
    before, after = load_file(str(base / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("g_s."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("g_s."))

    # within the warm-up the decoder's update is exactly that of a run without the term
    for name, extra in (("plain", {}), ("warm", {"adversarial": 0.5, "adversarial_warmup": 10}),
                        ("active", {"adversarial": 0.5, "adversarial_warmup": 0})):
        train(_cfg(tmp_path / name, max_steps=2, init_from=str(base), trainable="decoder", lr=1e-2, disc_channels=4,
                   **extra))
    plain, warm, active = (_g_s(tmp_path / n) for n in ("plain", "warm", "active"))
    assert all(torch.equal(plain[k], warm[k]) for k in plain)
    assert any(not torch.equal(plain[k], active[k]) for k in plain)


def test_joint_training_with_the_adversarial_term(data, tmp_path):
    out = tmp_path / "joint"
    train(_cfg(out, max_steps=2, adversarial=0.1, adversarial_warmup=0, adversarial_loss="hinge", disc_channels=4))
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 2 and (out / "discriminator.safetensors").exists()
    # a checkpoint from before the clip left the quantiles out: its Adam moments do not fit
    assert state.pop("clip_scope") == "main"
    (out / "state.json").write_text(json.dumps(state))
    train(_cfg(out, max_steps=3, adversarial=0.1, adversarial_warmup=0, adversarial_loss="hinge", disc_channels=4))
    assert (out / "train.log").read_text().count("Adam moments restarted") == 1


def test_cli_flags_reach_the_config(monkeypatch):
    import stic.train.loop
    from stic.cli import main

    seen = []
    monkeypatch.setattr(stic.train.loop, "train", seen.append)
    assert main(["train", "run", "out", "--adversarial", "0.15", "--adversarial-warmup", "7", "--adversarial-loss",
                 "hinge", "--disc-lr", "2e-4", "--disc-channels", "16", "--semantic", '{"clip-iqa": 0.1}',
                 "--clip-model", "some/clip", "--captions", "c.csv", "--refiner", "realesrgan-compact",
                 "--device", "cpu", "--precision", "fp32", "--log-every", "5", "--trainable", "decoder"]) == 0
    cfg = seen[0]
    assert (cfg.adversarial, cfg.adversarial_warmup, cfg.adversarial_loss, cfg.disc_lr, cfg.disc_channels) == (
        0.15, 7, "hinge", 2e-4, 16)
    assert (cfg.semantic, cfg.clip_model, cfg.captions, cfg.refiner) == ({"clip-iqa": 0.1}, "some/clip", "c.csv",
                                                                       "realesrgan-compact")
    assert (cfg.device, cfg.precision, cfg.log_every, cfg.trainable) == ("cpu", "fp32", 5, "decoder")
