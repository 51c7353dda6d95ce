"""Mixed precision: bf16 autocast for the transforms, metrics, CLIP and discriminator (on CUDA by
default), with CompressAI's entropy models kept in fp32 because the rate estimate (likelihoods,
the factorized density's matmuls) degrades in bf16. bf16 needs no loss scaling."""

import torch

PRECISIONS = ("auto", "bf16", "fp32")


def autocast_factory(precision: str, device: torch.device):
    """A function returning a fresh autocast context: bf16 on cuda for "auto", or as configured."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def keep_entropy_models_fp32(model) -> None:
    for name in ("entropy_bottleneck", "gaussian_conditional"):
        if hasattr(model, name):
            full_precision(getattr(model, name))


def full_precision(module) -> None:
    """Run `module` with autocast off and its floating-point tensor arguments in fp32."""
    forward = module.forward

    def fp32_forward(*args, **kwargs):
        with torch.autocast(args[0].device.type, enabled=False):
            return forward(*(_fp32(a) for a in args), **{k: _fp32(v) for k, v in kwargs.items()})

    module.forward = fp32_forward


def _fp32(value):
    return value.float() if torch.is_tensor(value) and value.is_floating_point() else value
