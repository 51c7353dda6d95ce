"""`stic train refiner`: paired crops, a two-step CPU run that checkpoints, resumes and exports, and
the exported weights running as the `realesrgan-stic` refiner."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from train_helpers import make_images, one_thread  # noqa: F401 (autouse fixture)

from stic.errors import InputError, ModelNotFoundError
from stic.models.cache import clear_model_caches
from stic.refine import esrgan
from stic.refine.registry import get_refiner, refine_section, refiner_for_section
from stic.train.config import RefinerConfig
from stic.train.refiner import (
    PairSampler,
    RefinerLoss,
    build_network,
    export_refiner,
    read_weights,
    spectrum_excess,
    train_refiner,
)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("STIC_DATA", str(make_images(tmp_path / "data", (("set_a", 6),))))


def test_crops_of_input_and_target_are_aligned():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    blocks = target.reshape(10, 4, 12, 4, 3).mean((1, 3)).round().astype(np.uint8)  # 4x4 block means
    sampler = PairSampler([(blocks, target)], crop=16, seed=1)
    for _ in range(5):
        small, big = sampler.batch(3)
        assert small.shape == (3, 3, 4, 4) and big.shape == (3, 3, 16, 16)
        assert torch.allclose(small, torch.nn.functional.avg_pool2d(big, 4), atol=0.6 / 255)  # flips included


def _cfg(out, **kw):
    return RefinerConfig(out=str(out), models=("stic-q1",), num_conv=2, crop=32, val_crop=32, batch=2,
                         losses={"lpips-alex": 1.0, "colour": 1.0}, adversarial=0.1, adversarial_warmup=1,
                         threads=1, device="cpu", datasets=("set_a",), **kw)


def test_two_steps_checkpoint_resume_and_export(data, tmp_path):
    run = train_refiner(_cfg(tmp_path / "run", max_steps=2))
    state = __import__("json").loads((run / "state.json").read_text())
    assert state["step"] == 2 and [h["step"] for h in state["history"]] == [0, 2]
    assert {"lpips-alex", "colour"} <= set(state["history"][0])
    pairs = sorted((run / "pairs" / "stic-q1-colour-mapped").glob("*.png"))
    assert len(pairs) == 6
    stamps = [p.stat().st_mtime_ns for p in pairs]
    before = read_weights(run)

    train_refiner(_cfg(tmp_path / "run", max_steps=3))  # resumes: one more step, pairs reused
    state = __import__("json").loads((run / "state.json").read_text())
    assert state["step"] == 3
    assert [p.stat().st_mtime_ns for p in pairs] == stamps
    after = read_weights(run)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (run / "discriminator.safetensors").is_file()

    shipped = export_refiner(run, tmp_path / "refiner.safetensors")
    net = esrgan.load_shipped(shipped)
    trained = build_network(2)
    trained.load_state_dict(after)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net(x), trained(x), atol=2e-2)


def test_an_exported_file_refines_on_the_decoders_path(tmp_path):
    """RealESRGANRefiner.from_file runs a file's own network (what bench/refiner_weights_kodak.py
    judges): the shipped file gives the shipped refiner's output, other weights another one."""
    image = np.random.default_rng(1).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    shipped = esrgan.RealESRGANRefiner("realesrgan-stic")
    again = esrgan.RealESRGANRefiner.from_file(esrgan.shipped_file("realesrgan-stic"))
    assert np.array_equal(again.refine(image), shipped.refine(image))
    torch.manual_seed(0)
    state = {k: v.half() for k, v in build_network(2).state_dict().items()}
    save_file(state, str(tmp_path / "other.safetensors"), metadata={"num_conv": "2"})
    other = esrgan.RealESRGANRefiner.from_file(tmp_path / "other.safetensors")
    assert other.degrid == shipped.degrid and not np.array_equal(other.refine(image), shipped.refine(image))
    # a file coded with it names its own weights
    assert again.fingerprint() == shipped.fingerprint()
    assert other.fingerprint() != shipped.fingerprint()


def test_real_esrgan_pth_is_read_tensors_only(tmp_path):
    state = {k: v for k, v in build_network(1).state_dict().items()}
    torch.save({"params": state}, tmp_path / "ok.pth")
    assert set(read_weights(tmp_path / "ok.pth")) == set(state)
    torch.save({"params": state, "extra": np.dtype("float32")}, tmp_path / "bad.pth")
    with pytest.raises(ModelNotFoundError, match="never unpickles"):
        read_weights(tmp_path / "bad.pth")
    with pytest.raises(ModelNotFoundError, match="not found"):
        read_weights(tmp_path / "missing.safetensors")


def test_shipped_refiner_runs_and_is_named_in_the_refine_section(tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = {k: v.half() for k, v in build_network(2).state_dict().items()}
    save_file(state, str(tmp_path / "r.safetensors"), metadata={"num_conv": "2"})
    monkeypatch.setattr(esrgan, "shipped_file", lambda variant: tmp_path / "r.safetensors")
    clear_model_caches()
    try:
        refiner = get_refiner("realesrgan-stic")
        image = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
        out = refiner.refine(image)
        assert out.shape == image.shape and out.dtype == np.uint8
        section = refine_section(refiner)
        again, seed = refiner_for_section(section)
        assert again.name == "realesrgan-stic" and np.array_equal(again.refine(image), out)
        monkeypatch.setattr(esrgan, "shipped_file", lambda variant: tmp_path / "absent.safetensors")
        clear_model_caches()
        with pytest.raises(ModelNotFoundError, match="realesrgan-stic"):
            get_refiner("realesrgan-stic")
    finally:
        clear_model_caches()


def test_cli_flags_reach_the_config(monkeypatch):
    from stic import cli

    seen = {}
    monkeypatch.setattr("stic.train.refiner.train_refiner", lambda cfg: seen.setdefault("cfg", cfg))
    assert cli.main(["train", "refiner", "out", "--models", "stic-q2", "--crop", "64", "--losses", '{"dists": 1}',
                     "--adversarial", "0", "--device", "cpu", "--minutes", "3"]) == 0
    cfg = seen["cfg"]
    assert cfg.models == ("stic-q2",) and cfg.crop == 64 and cfg.losses == {"dists": 1} and cfg.adversarial == 0
    assert cfg.minutes == 3 and cfg.device == "cpu"


def test_a_missing_starting_point_fails_before_any_pair_is_coded(data, tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        train_refiner(_cfg(tmp_path / "run", max_steps=1, init_from=str(tmp_path / "absent.pth")))
    assert not (tmp_path / "run" / "pairs").exists()


def test_the_spectrum_term_costs_a_pattern_the_photo_lacks_and_nothing_else():
    torch.manual_seed(0)
    photo = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 68, 68), 5, 1)  # 64x64, smooth noise
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    weave = photo + 0.05 * torch.sin((rows + cols) * 2.2)  # a diagonal pattern of one frequency
    assert float(spectrum_excess(photo, photo)) == 0.0
    assert float(spectrum_excess(weave, photo)) > 1e-3
    assert float(spectrum_excess(photo * 0.5, photo)) == 0.0  # less energy everywhere: no excess
    total, values = RefinerLoss({"spectrum": 3.0}, "cpu")(weave, photo)
    assert set(values) == {"spectrum"} and torch.isclose(total, 3 * values["spectrum"])
    with pytest.raises(InputError, match="colour, spectrum"):
        RefinerLoss({"weave": 1.0}, "cpu")
