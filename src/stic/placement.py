"""Where the large optional models run — the diffusion refiner and the VLM captioner — as one
(device, dtype) pair resolved the same way for both.

They are float models whose output need not be bit-exact (the refiner runs after the last exact
step; a caption is coded from its text, whatever computed it), so they may use a GPU and half
precision: CUDA when one is visible, bfloat16 there. On the CPU the diffusion refiner stays in
float32 (bfloat16 convolutions are slow there) and the captioner uses bfloat16 (half the memory:
a 7B VLM in ~15 GB instead of ~30 GB). The VLM *caption coder* never comes here: its
probabilities must match the decoder's, so it always runs in float32 on the CPU.
"""

from __future__ import annotations

import torch

from stic.errors import InputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve(device: str | None, dtype: str | None, cpu_dtype: str = "float32") -> tuple[str, torch.dtype]:
    """`device` ("cpu", "cuda", "cuda:N"; default: CUDA if visible, else the CPU) and `dtype`
    (a DTYPES name; default: bfloat16 on CUDA, `cpu_dtype` on the CPU), checked."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise InputError(f"unknown device {device!r}: give cpu, cuda or cuda:N")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r}: no CUDA GPU is visible on this machine")
        if index and int(index) >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    name = dtype or ("bfloat16" if kind == "cuda" else cpu_dtype)
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}: give one of {', '.join(DTYPES)}")
    return device, DTYPES[name]
