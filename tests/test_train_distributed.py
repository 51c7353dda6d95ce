"""Training at scale: the same `stic train run` under torchrun (2 CPU processes, gloo) learns like
one process, gives each rank its own crops, checkpoints once and resumes on every rank; devices
and bf16 autocast (run on CPU here) keep the rate estimate in fp32."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from train_helpers import TINY, make_images, one_thread  # noqa: F401 (autouse fixture)

from stic.train.config import TrainConfig
from stic.train.distributed import resolve_device
from stic.train.loop import train
from stic.train.precision import autocast_factory, keep_entropy_models_fp32

ARGS = ["--model", json.dumps(TINY), "--datasets", "set_a", "--crop", "64", "--batch", "2", "--val-crop", "64",
        "--threads", "1", "--lr", "3e-3", "--lmbda", "0.01", "--log-every", "1", "--device", "cpu",
        # a discriminator that learns (its gradients averaged over ranks) but, in its warm-up, leaves the codec's loss alone
        "--adversarial", "0.1", "--adversarial-warmup", "1000", "--disc-channels", "4"]
STEPS = 30

#: torchrun worker: the CLI twice, the second call resuming the first's checkpoint (one launch, to
#: keep the test short: each launch pays two interpreter + torch + CompressAI start-ups)
DRIVER = """
import json, sys
from stic.cli import main
args = json.loads(sys.argv[2])
assert main(["train", "run", sys.argv[1], *args, "--max-steps", "{steps}"]) == 0
assert main(["train", "run", sys.argv[1], *args, "--max-steps", "{more}"]) == 0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _curve(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "losses.jsonl").read_text().splitlines()]


def test_two_processes_learn_like_one_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("STIC_DATA", str(make_images(tmp_path / "data")))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(steps=STEPS, more=STEPS + 4))
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STIC_DATA": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
         f"--master_port={_free_port()}", str(driver), str(two), json.dumps(ARGS)],
        env=env, capture_output=True, text=True, timeout=150, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    one = tmp_path / "one"
    from stic.cli import main

    assert main(["train", "run", str(one), *ARGS, "--max-steps", str(STEPS)]) == 0
    single, double = _curve(one), _curve(two)
    assert len(single) == STEPS and len(double) == STEPS + 4  # rank 0 alone wrote the curve
    # same initial weights and rank 0 draws the single process's crops: the first step agrees
    assert double[0] == pytest.approx(single[0], rel=1e-5)
    first, end_1, end_2 = single[0], sum(single[-10:]) / 10, sum(double[STEPS - 10 : STEPS]) / 10
    assert end_1 < 0.5 * first and end_2 < 0.5 * first  # both learn ...
    assert 0.7 < end_2 / end_1 < 1.3  # ... to about the same loss over the same number of steps

    log = (two / "train.log").read_text()
    assert "2 process(es) on cpu" in log and "resumed at step 30" in log
    state = json.loads((two / "state.json").read_text())
    assert state["step"] == STEPS + 4 and len(state["samplers"]) == 2
    assert state["samplers"][0] != state["samplers"][1]  # each rank has its own crop stream
    assert (two / "discriminator.safetensors").exists()


def test_devices_and_mixed_precision_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    cpu = torch.device("cpu")
    with autocast_factory("bf16", cpu)():
        assert torch.is_autocast_enabled("cpu")
    with autocast_factory("auto", cpu)():  # "auto" on cpu: fp32
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="precision"):
        autocast_factory("fp8", cpu)


def test_bf16_autocast_keeps_the_entropy_models_in_fp32(tmp_path, monkeypatch):
    from stic.image.architectures import build_model

    torch.manual_seed(0)
    model = build_model(TINY).eval()
    x = torch.rand(1, 3, 64, 64)
    reference = model(x)
    keep_entropy_models_fp32(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x)
    assert mixed["x_hat"].dtype == torch.bfloat16  # the transforms ran in bf16 ...
    for key, likelihoods in mixed["likelihoods"].items():  # ... the rate estimate in fp32
        assert likelihoods.dtype == torch.float32
        bits, bits_ref = (-torch.log2(lik).sum().item() for lik in (likelihoods, reference["likelihoods"][key]))
        assert bits == pytest.approx(bits_ref, rel=0.05)

    monkeypatch.setenv("STIC_DATA", str(make_images(tmp_path / "data")))
    out = tmp_path / "bf16"
    train(TrainConfig(out=str(out), model=TINY, datasets=("set_a",), crop=64, batch=2, val_crop=64, threads=1,
                      max_steps=2, precision="bf16", device="cpu", log_every=1, adversarial=0.1, adversarial_warmup=0,
                      disc_channels=4, perceptual={"lpips-alex": 1.0}))
    assert json.loads((out / "state.json").read_text())["history"][-1]["val_bpp"] > 0
    curve = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(list(point.values()))).all() for point in curve)
