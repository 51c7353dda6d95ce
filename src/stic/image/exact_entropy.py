"""Exact entropy parameters for the checkerboard image models: integer h_s, context and
parameter networks, so every machine picks the same Gaussian for every latent.

Why: the symbols' probabilities come from float networks (the hyperprior synthesis, the masked
context convolution, the entropy-parameter MLP), and a scale that lands within rounding of a
table boundary picks another CDF on another machine; one such flip destroys the rest of the
image. Here those networks run on integers (Ballé, Johnston, Minnen 2019, "Integer networks for
data compression with latent-variable models"): int8 weights per output channel, activations
as int64 fixed point quantised per tensor to 16-bit codes, convolutions as float64 products of
integers (every partial sum below 2^53: exact in any order; stic.image.array_conv), LeakyReLU and
GELU by integer arithmetic and tables. Everything is numpy, read from the weights as arrays, and the
decoder's rANS coder is loaded without the rest of CompressAI (`LatentDecoder`): decoding the
symbols needs no torch. Means come out in fixed point (units of 2^-12), so y_hat = symbol + mean
is exact, and scales are compared with integer thresholds to pick the CDF table.

The synthesis g_s stays float: pixels may differ by a level between machines, symbols never.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from stic._light_compressai import rans
from stic.image import array_conv
from stic.text import fixed_point as fp

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

    def __init__(
        self, weight: np.ndarray, bias: np.ndarray | None, transposed: bool = False, stride: int = 1,
        padding: int = 0, output_padding: int = 0, mask: np.ndarray | None = None,
    ):  # fmt: skip
        """`weight` in torch's layout ([in, out, k, k] when transposed), any float dtype."""
        weight = np.asarray(weight, dtype=np.float64)
        if mask is not None:  # a masked convolution: CompressAI masks its weight only on forward()
            weight = weight * mask
        per_out = weight.transpose(1, 0, 2, 3) if transposed else weight  # [out, in, k, k] either way
        q = fp.quantise_weight(per_out.reshape(per_out.shape[0], -1))  # the LM's per-row int8
        codes = q["codes"].astype(np.float64).reshape(per_out.shape)
        self.codes = np.ascontiguousarray(codes.transpose(1, 0, 2, 3) if transposed else codes)
        self.mantissa = q["mantissa"][:, None, None]
        self.shift = int(q["shift"])
        bias = np.zeros(per_out.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
        self.bias = np.rint(bias * (1 << OUT_BITS)).astype(np.int64)[:, None, None]
        self.transposed, self.stride, self.padding, self.output_padding = transposed, stride, padding, output_padding

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: [C, H, W] int64 in units of 2^-12 -> int64 in units of 2^-12."""
        peak = int(np.abs(x).max()) if x.size else 0
        exponent = max(0, peak.bit_length() - 15)
        codes = np.clip(fp.shift_round(x, -exponent), -_CODE_LIMIT, _CODE_LIMIT).astype(np.float64)
        if self.transposed:
            acc = array_conv.conv_transpose2d(codes, self.codes, None, self.stride, self.padding, self.output_padding)
        else:
            acc = array_conv.conv2d(codes, self.codes, None, self.padding)
        acc = np.rint(acc).astype(np.int64)  # |acc| < 2^15 * 127 * K < 2^53
        return fp.shift_round(acc * self.mantissa, exponent - self.shift) + self.bias


def leaky_relu(x: np.ndarray, slope: float = 0.01) -> np.ndarray:
    factor = round(slope * (1 << 16))
    return np.where(x >= 0, x, fp.shift_round(x * factor, -16))


#: round(2^16 Phi(k / 2^8)) for k in [-2^11, 2^11], int32 little-endian, made by `phi_table()`
#: (a test recomputes it): shipped because the decimal series takes ~1 s, too long for a cold start
PHI_TABLE = Path(__file__).with_name("tables") / "phi_2-8_2-16.i32"


@functools.cache
def _phi_table() -> np.ndarray:
    return np.frombuffer(PHI_TABLE.read_bytes(), dtype="<i4").astype(np.int64)


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


def gelu(x: np.ndarray) -> np.ndarray:
    """x * Phi(x) for int64 x in units of 2^-12 (Phi from the table, x clamped to +-8 there)."""
    index = np.clip(fp.shift_round(x, -4), -(1 << 11), 1 << 11) + (1 << 11)
    return fp.shift_round(x * _phi_table()[index], -16)


def checkerboard_mask(kernel: int) -> np.ndarray:
    """CompressAI's CheckerboardMaskedConv2d mask (type A): a tap sees only the other half."""
    mask = np.ones((kernel, kernel))
    mask[0::2, 0::2] = 0
    mask[1::2, 1::2] = 0
    return mask


def unembed(y: np.ndarray) -> np.ndarray:
    """[C, H, W] -> [2, C, H, W/2]: the anchors ((i + j) even) and the other half, each row
    packed (CompressAI's CheckerboardLatentCodec.unembed, anchor parity "even")."""
    channels, height, width = y.shape
    halves = np.zeros((2, channels, height, width // 2), y.dtype)
    halves[0, :, 0::2], halves[0, :, 1::2] = y[:, 0::2, 0::2], y[:, 1::2, 1::2]
    halves[1, :, 0::2], halves[1, :, 1::2] = y[:, 0::2, 1::2], y[:, 1::2, 0::2]
    return halves


def embed(halves: np.ndarray) -> np.ndarray:
    """The inverse of `unembed`."""
    _, channels, height, half_width = halves.shape
    y = np.zeros((channels, height, 2 * half_width), halves.dtype)
    y[:, 0::2, 0::2], y[:, 1::2, 1::2] = halves[0, :, 0::2], halves[0, :, 1::2]
    y[:, 0::2, 1::2], y[:, 1::2, 0::2] = halves[1, :, 0::2], halves[1, :, 1::2]
    return y


class ExactEntropyParameters:
    """h_s, the checkerboard context and the entropy-parameter MLP of a MeanScaleCheckerboard
    (stic.image.checkerboard), run on integers from its weights (a state dict of arrays);
    `params` gives one checkerboard half's (scale indexes, means)."""

    def __init__(self, state: Mapping[str, np.ndarray]):
        def conv(name: str, transposed: bool = False, mask: bool = False) -> IntConv:
            weight = state[f"{name}.weight"]
            kernel = weight.shape[-1]
            if transposed:  # CompressAI's deconv: stride 2, output padding 1
                return IntConv(weight, state[f"{name}.bias"], True, 2, kernel // 2, 1)
            return IntConv(weight, state[f"{name}.bias"], padding=kernel // 2, mask=checkerboard_mask(kernel) if mask else None)

        self.h_s = [conv("h_s.0", True), conv("h_s.2", True), conv("h_s.4")]
        self.context = conv("context.context_prediction", mask=True)
        self.mlp = [conv(f"context.entropy_parameters.net.{i}") for i in (0, 2, 4)]
        self.channels = state["context.context_prediction.weight"].shape[0]
        gc = "context.y.gaussian_conditional."
        bound = float(np.asarray(state[gc + "lower_bound_scale.bound"]).reshape(-1)[0])
        table = np.maximum(np.asarray(state[gc + "scale_table"], dtype=np.float64), bound)
        #: index = number of table entries (but the last) strictly below the scale
        self.thresholds = np.floor(table[:-1] * (1 << OUT_BITS)).astype(np.int64)

    def hyper(self, z_hat: np.ndarray) -> np.ndarray:
        """h_s(z_hat) in units of 2^-12, from float z_hat [C, h, w] (symbols + medians, rounded to
        the nearest unit)."""
        x = np.rint(np.asarray(z_hat, dtype=np.float64) * (1 << OUT_BITS)).astype(np.int64)
        x = leaky_relu(self.h_s[0](x))
        x = leaky_relu(self.h_s[1](x))
        return self.h_s[2](x)

    def entropy_parameters(self, context: np.ndarray, hyper: np.ndarray) -> np.ndarray:
        x = np.concatenate([context, hyper])
        h = gelu(self.mlp[0](x))
        h = gelu(self.mlp[1](h))
        return x[self.channels :] + self.mlp[2](h)

    def indexes(self, scales: np.ndarray, units: int = 1 << OUT_BITS) -> np.ndarray:
        """CDF table index of each (fixed-point) scale, divided by the quantisation step of `units`
        (2^-12 each): how many thresholds lie below it."""
        if units != 1 << OUT_BITS:
            scales = (scales << OUT_BITS) // units
        return np.searchsorted(self.thresholds, scales).astype(np.int32)

    def params(self, fixed_halves: np.ndarray, hyper: np.ndarray, half: int, units: int) -> tuple[np.ndarray, np.ndarray]:
        """Scale indexes and means (fixed point) of one checkerboard half, laid out as the coder
        codes it ([C, h, w/2]): the anchors from the hyperprior alone, the other half also from
        the decoded anchors (`fixed_halves`, [2, C, h, w/2]) around them."""
        if half == 0:
            context = np.zeros_like(hyper[: self.channels])
        else:
            context = self.context(embed(fixed_halves))
        scales, means = np.split(self.entropy_parameters(context, hyper), 2)
        return self.indexes(unembed(scales)[half], units), unembed(means)[half]


def to_float(fixed: np.ndarray) -> np.ndarray:
    """Fixed point (units of 2^-12) -> float32 (exact: a power-of-two division, then one rounding)."""
    return (fixed.astype(np.float64) / (1 << OUT_BITS)).astype(np.float32)


class LatentDecoder:
    """Strings [anchors, non-anchors, z] -> y_hat, from a MeanScaleCheckerboard's weights and entropy
    tables (a state dict of arrays), with CompressAI's rANS decoder."""

    def __init__(self, state: Mapping[str, np.ndarray]):
        self.exact = ExactEntropyParameters(state)
        self.z_tables, self.y_tables = _tables(state, "entropy_bottleneck."), _tables(state, "context.y.gaussian_conditional.")
        #: z_hat = symbol + median, in float32 as CompressAI's EntropyBottleneck adds them
        self.medians = np.asarray(state["entropy_bottleneck.quantiles"], dtype=np.float32)[:, 0, 1]

    def latents(self, strings: list[bytes], z_shape: tuple[int, int], step: int = 0) -> np.ndarray:
        """y_hat [M, 4h, 4w] (float32) from strings written with quantisation `step`."""
        decoder = rans().RansDecoder()
        channels, (h, w) = len(self.medians), z_shape
        z_indexes = np.repeat(np.arange(channels, dtype=np.int32), h * w).tolist()
        z = np.asarray(decoder.decode_with_indexes(strings[2], z_indexes, *self.z_tables), dtype=np.float32)
        hyper = self.exact.hyper(z.reshape(channels, h, w) + self.medians[:, None, None])
        units = STEP_UNITS[step]
        fixed_halves = np.zeros((2, self.exact.channels, hyper.shape[1], hyper.shape[2] // 2), np.int64)
        for half in range(2):
            indexes, means = self.exact.params(fixed_halves, hyper, half, units)
            symbols = decoder.decode_with_indexes(strings[half], indexes.reshape(-1).tolist(), *self.y_tables)
            fixed_halves[half] = np.asarray(symbols, dtype=np.int64).reshape(means.shape) * units + means
        return to_float(embed(fixed_halves))


def _tables(state: Mapping[str, np.ndarray], prefix: str) -> tuple[list, list, list]:
    """An entropy model's CDF tables as the rANS coder takes them."""
    return tuple(np.asarray(state[prefix + key]).tolist() for key in ("_quantized_cdf", "_cdf_length", "_offset"))
