"""Exact entropy parameters for the checkerboard image models: integer h_s, context and
parameter networks, so every machine picks the same Gaussian for every latent.

Why: the symbols' probabilities come from float networks (the hyperprior synthesis, the masked
context convolution, the entropy-parameter MLP), and a scale that lands within rounding of a
table boundary picks another CDF on another machine; one such flip destroys the rest of the
image. Here those networks run on integers (Ballé, Johnston, Minnen 2019, "Integer networks for
data compression with latent-variable models"): int8 weights per output channel, activations
as int64 fixed point quantised per tensor to 16-bit codes, convolutions as float64 products of
integers (every partial sum below 2^53: exact in any order), LeakyReLU and GELU by integer
arithmetic and tables. Means come out in fixed point (units of 2^-12), so y_hat = symbol + mean
is exact, and scales are compared with integer thresholds to pick the CDF table.

The synthesis g_s stays float: pixels may differ by a level between machines, symbols never.
"""

from __future__ import annotations

import decimal
import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stic.text import fixed_point as fp
from stic.text.exact_lm import quantise_weight

OUT_BITS = 12  #: means, scales and every activation, in units of 2^-12
_CODE_LIMIT = (1 << 15) - 1  #: activations enter a convolution as 16-bit codes


def _step_units(step: int) -> int:
    """floor(2^12 * 2^(-step/16)) in integers: the largest D with D^16 * 2^step <= 2^192."""
    low, high = 1, 1 << OUT_BITS
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if middle**16 << step <= 1 << (16 * OUT_BITS) else (low, middle - 1)
    return low


#: Finer quantisation of y, for rates between and above the models' own: step s rounds y about its
#: mean in steps of STEP_UNITS[s] / 2^12 ~ 2^(-s/16) (s = 0: the unit step the models were trained
#: with) and codes it with the Gaussian of scale / step; one step adds ~5 % to the image's bits, so
#: `--bpp` can land close to any target. Reconstruction (symbol * units + mean) and the scale's
#: table index are integer arithmetic.
MAX_STEP = 48
STEP_UNITS = tuple(_step_units(s) for s in range(MAX_STEP + 1))


class IntConv:
    """A (transposed) convolution with int8 weights per output channel and exact integer output."""

    def __init__(self, conv: torch.nn.Module, transposed: bool, mask: torch.Tensor | None = None):
        weight = conv.weight.detach().double()
        if mask is not None:  # a masked convolution: CompressAI masks its weight only on forward()
            weight = weight * mask.double()
        out_dim = 1 if transposed else 0
        per_out = weight.transpose(0, out_dim)  # [out, in, k, k] either way
        q = quantise_weight(per_out.reshape(per_out.shape[0], -1).numpy())  # the LM's per-row int8
        codes = torch.from_numpy(q["codes"]).double().reshape(per_out.shape)
        self.codes = codes.transpose(0, out_dim).contiguous()  # float64 integers, conv layout
        self.mantissa = torch.from_numpy(q["mantissa"]).view(1, -1, 1, 1)
        self.shift = int(q["shift"])
        bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(per_out.shape[0], dtype=torch.float64)
        self.bias = torch.round(bias * (1 << OUT_BITS)).to(torch.int64).view(1, -1, 1, 1)
        self.transposed = transposed
        self.stride, self.padding = conv.stride, conv.padding
        self.output_padding = getattr(conv, "output_padding", 0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: int64 in units of 2^-12 -> int64 in units of 2^-12."""
        peak = int(x.abs().max()) if x.numel() else 0
        exponent = max(0, peak.bit_length() - 15)
        codes = fp.shift_round(x, -exponent).clamp(-_CODE_LIMIT, _CODE_LIMIT).double()
        if self.transposed:
            acc = F.conv_transpose2d(codes, self.codes, stride=self.stride, padding=self.padding,
                                     output_padding=self.output_padding)
        else:
            acc = F.conv2d(codes, self.codes, stride=self.stride, padding=self.padding)
        acc = torch.round(acc).to(torch.int64)  # |acc| < 2^15 * 127 * K < 2^53
        return fp.shift_round(acc * self.mantissa, exponent - self.shift) + self.bias


def leaky_relu(x: torch.Tensor, slope: float = 0.01) -> torch.Tensor:
    factor = round(slope * (1 << 16))
    return torch.where(x >= 0, x, fp.shift_round(x * factor, -16))


#: round(2^16 Phi(k / 2^8)) for k in [-2^11, 2^11], int32 little-endian, made by `phi_table()`
#: (a test recomputes it): shipped because the decimal series takes ~1 s, too long for a cold start
PHI_TABLE = Path(__file__).with_name("tables") / "phi_2-8_2-16.i32"


@functools.cache
def _phi_table() -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(PHI_TABLE.read_bytes(), dtype="<i4").astype(np.int64))


def phi_table() -> list[int]:
    """round(2^16 * Phi(k / 2^8)) for k in [-2^11, 2^11] (Phi: the standard normal CDF), in
    exact decimal arithmetic."""
    ctx = decimal.Context(prec=40)
    sqrt2 = ctx.sqrt(decimal.Decimal(2))
    values = []
    for k in range(-(1 << 11), (1 << 11) + 1):
        x = ctx.divide(decimal.Decimal(k), decimal.Decimal(256) * sqrt2)
        values.append(fp._fix(ctx.divide(1 + _erf(x, ctx), 2), 16))
    return values


def _erf(x: decimal.Decimal, ctx: decimal.Context) -> decimal.Decimal:
    """erf by its Maclaurin series (|x| <= 8 / sqrt(2): converges at 40 digits)."""
    total, term, n = decimal.Decimal(0), x, 0
    square = ctx.multiply(x, x)
    while abs(term) > decimal.Decimal("1e-45") or n < 2:
        total = ctx.add(total, ctx.divide(term, 2 * n + 1))
        n += 1
        term = ctx.divide(ctx.multiply(-term, square), n)
    two_over_sqrt_pi = ctx.divide(2, ctx.sqrt(fp._PI))
    return ctx.multiply(total, two_over_sqrt_pi)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """x * Phi(x) for int64 x in units of 2^-12 (Phi from the table, x clamped to +-8 there)."""
    index = (fp.shift_round(x, -4).clamp(-(1 << 11), 1 << 11) + (1 << 11)).long()
    return fp.shift_round(x * _phi_table()[index], -16)


class ExactEntropyParameters:
    """h_s, the checkerboard context and the entropy-parameter MLP of a MeanScaleCheckerboard,
    run on integers; `params(z_hat, y_hat_anchors)` gives (scale indexes, means)."""

    def __init__(self, model):
        hs = model.h_s
        self.h_s = [IntConv(hs[0], True), IntConv(hs[2], True), IntConv(hs[4], False)]
        cb = model.context
        self.context = IntConv(cb.context_prediction, False, mask=cb.context_prediction.mask)
        net = cb.entropy_parameters.net
        self.mlp = [IntConv(net[0], False), IntConv(net[2], False), IntConv(net[4], False)]
        self.channels = cb.entropy_parameters.channels
        gc = model.gaussian_conditional
        bound = float(gc.lower_bound_scale.bound)
        table = gc.scale_table.double().clamp(min=bound)
        #: index = number of table entries (but the last) strictly below the scale
        self.thresholds = torch.floor(table[:-1] * (1 << OUT_BITS)).to(torch.int64)

    def hyper(self, z_hat: torch.Tensor) -> torch.Tensor:
        """h_s(z_hat) in units of 2^-12, from float z_hat (symbols + medians: exact in 2^-12?
        rounded to the nearest unit either way)."""
        x = torch.round(z_hat.double() * (1 << OUT_BITS)).to(torch.int64)
        x = leaky_relu(self.h_s[0](x))
        x = leaky_relu(self.h_s[1](x))
        return self.h_s[2](x)

    def entropy_parameters(self, context: torch.Tensor, hyper: torch.Tensor) -> torch.Tensor:
        x = torch.cat([context, hyper], 1)
        h = gelu(self.mlp[0](x))
        h = gelu(self.mlp[1](h))
        return x[:, self.channels :] + self.mlp[2](h)

    def indexes(self, scales: torch.Tensor, units: int = 1 << OUT_BITS) -> torch.Tensor:
        """CDF table index of each (fixed-point) scale, divided by the quantisation step of `units`
        (2^-12 each): how many thresholds lie below it."""
        if units != 1 << OUT_BITS:
            scales = torch.div(scales << OUT_BITS, units, rounding_mode="floor")
        return torch.searchsorted(self.thresholds, scales.contiguous()).to(torch.int32)


def _to_float(fixed: torch.Tensor) -> torch.Tensor:
    return fixed.to(torch.float64).div(1 << OUT_BITS).float()


def _params(exact: ExactEntropyParameters, model, fixed_halves: torch.Tensor, hyper: torch.Tensor, half: int, units: int):
    """Scale indexes and means (fixed point) of one checkerboard half, laid out as the coder
    codes it ([n, c, h, w/2]): the anchors from the hyperprior alone, the other half also from
    the decoded anchors (`fixed_halves`) around them."""
    if half == 0:
        context = torch.zeros_like(hyper[:, : exact.channels])
    else:
        context = exact.context(model.context.embed(fixed_halves))
    params = exact.entropy_parameters(context, hyper)
    scales, means = params.chunk(2, 1)
    cb = model.context
    scales, means = cb.unembed(scales)[half], cb.unembed(means)[half]
    return exact.indexes(scales, units), means


def compress_latents(model, exact: ExactEntropyParameters, y: torch.Tensor, z: torch.Tensor, step: int = 0) -> list[bytes]:
    """Strings [anchors, non-anchors, z] with exact entropy parameters, y quantised with `step`."""
    units = STEP_UNITS[step]
    z_strings = model.entropy_bottleneck.compress(z)
    z_hat = model.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
    hyper = exact.hyper(z_hat)
    gc = model.gaussian_conditional
    y_halves = model.context.unembed(y)
    fixed_halves = torch.zeros((2, *y_halves.shape[1:]), dtype=torch.int64)
    strings = []
    for half in range(2):
        indexes, means = _params(exact, model, fixed_halves, hyper, half, units)
        residual = y_halves[half] - _to_float(means)
        if step:  # the encoder's own choice of symbol: nothing to keep exact here
            residual = residual.double() * ((1 << OUT_BITS) / units)
        symbols = torch.round(residual).to(torch.int64)
        strings.append(gc.compress(symbols.float(), indexes)[0])
        fixed_halves[half] = symbols * units + means
    return [*strings, z_strings[0]]


def decompress_latents(model, exact: ExactEntropyParameters, strings: list[bytes], z_shape, step: int = 0) -> torch.Tensor:
    """y_hat (float) from strings [anchors, non-anchors, z] written with `step`."""
    units = STEP_UNITS[step]
    z_hat = model.entropy_bottleneck.decompress([strings[2]], z_shape)
    hyper = exact.hyper(z_hat)
    h, w = hyper.shape[-2:]
    fixed_halves = torch.zeros((2, 1, exact.channels, h, w // 2), dtype=torch.int64)
    for half in range(2):
        indexes, means = _params(exact, model, fixed_halves, hyper, half, units)
        symbols = model.gaussian_conditional.decompress([strings[half]], indexes).to(torch.int64)
        fixed_halves[half] = symbols * units + means
    return _to_float(model.context.embed(fixed_halves))
