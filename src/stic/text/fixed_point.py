"""Integer arithmetic for the exact caption LM (stic.text.exact_lm).

Why: an arithmetic decoder must see the very same symbol frequencies as the encoder. Float
reductions (matrix products, sums) and libm functions (exp, sin) give different last bits on
another CPU kernel class, thread count, batch shape or device, and one flipped bit desynchronises
the coder. Everything here is integer arithmetic on int64 numpy arrays and Python ints (exact on every
machine); stic.text.exact_lm adds int8 matrix products with int32 accumulation and float64
matrix products whose inputs are small integers, so that every product and every partial sum is
an integer below 2^53: such a product is exact in any summation order, FMA or not.

The transcendental tables (exp, cos/sin, square roots of constants) are computed once with
Python's `decimal` module, a deterministic software implementation, to 40 digits, and rounded to
fixed point: no libm is ever involved. `docs/caption_coding.md` gives the number formats.
"""

from __future__ import annotations

import decimal
import functools
import math

import numpy as np

#: Fixed-point formats (bits after the binary point).
EXP_IN_BITS = 12  #: exp_neg's argument
EXP_OUT_BITS = 30  #: exp_neg's result (1.0 = 2^30)
ROPE_BITS = 15  #: cos/sin tables
_ROPE_WORK_BITS = 30  #: cos/sin while the tables are built
SIGMOID_BITS = 16  #: sigmoid's result

_EXP_LO = 64  # exp(-d) = HI[d // 64] * LO[d % 64]
#: exp(-x) < 2^-31 beyond this x: the result rounds to 0
_EXP_CUTOFF = 22
_HI_SIZE = _EXP_CUTOFF * (1 << EXP_IN_BITS) // _EXP_LO + 1

_CONTEXT = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
# pi to 45 digits: the one constant the cos/sin tables need
_PI = decimal.Decimal("3.14159265358979323846264338327950288419716939937510")


def _fix(value: decimal.Decimal, bits: int) -> int:
    """round(value * 2^bits), half to even, in exact decimal arithmetic."""
    scaled = _CONTEXT.multiply(value, decimal.Decimal(1 << bits))
    return int(scaled.to_integral_value(rounding=decimal.ROUND_HALF_EVEN, context=_CONTEXT))


def fixed_constant(value: float | str, bits: int) -> int:
    """A float constant from a model config (e.g. an epsilon) as round(value * 2^bits).
    `float -> Decimal` is exact, so this is the same on every machine."""
    return _fix(decimal.Decimal(value), bits)


def fixed_sqrt(value: float | str, bits: int) -> int:
    """round(sqrt(value) * 2^bits), exactly."""
    return _fix(_CONTEXT.sqrt(decimal.Decimal(value)), bits)


@functools.cache
def _exp_tables() -> tuple[np.ndarray, np.ndarray]:
    step = decimal.Decimal(1) / (1 << EXP_IN_BITS)
    hi = [_fix(_CONTEXT.exp(-i * _EXP_LO * step), EXP_OUT_BITS) for i in range(_HI_SIZE)]
    hi[-1] = 0  # everything from the cutoff on
    lo = [_fix(_CONTEXT.exp(-i * step), EXP_OUT_BITS) for i in range(_EXP_LO)]
    return np.array(hi, dtype=np.int64), np.array(lo, dtype=np.int64)


def exp_neg_product(d: np.ndarray) -> np.ndarray:
    """round(2^30 exp(-d / 2^12)) for int64 d >= 0 (to within 1.5 units), 0 from d = 22 on: the
    product of two table entries, rounded. What `exp_neg` looks up."""
    hi, lo = _exp_tables()
    product = hi[np.minimum(d >> 6, _HI_SIZE - 1)] * lo[d & (_EXP_LO - 1)]
    return (product + (1 << (EXP_OUT_BITS - 1))) >> EXP_OUT_BITS


def exp_neg(d: np.ndarray) -> np.ndarray:
    """`exp_neg_product` from a table of its values at every d up to the cutoff (one lookup in
    720 KB instead of two lookups and five array passes: the encoder's 49,152 probabilities a token)."""
    return np.take(_exp_table(), d, mode="clip")


@functools.cache
def _exp_table() -> np.ndarray:
    return exp_neg_product(np.arange((_HI_SIZE - 1) * _EXP_LO + 1, dtype=np.int64))  # the last entry: 0


def sigmoid(x: np.ndarray, bits: int) -> np.ndarray:
    """2^16 / (1 + exp(-x)) for int64 x in units of 2^-bits: round_div(2^46, 2^30 + exp_neg(|x|))
    for x >= 0 and 2^16 minus that for x < 0, |x| taken to exp_neg's units with `shift_round`.
    One lookup in a table of it over both signs (every |x| below exp_neg's cutoff; 2^16 and 0
    from there on)."""
    shift = EXP_IN_BITS - bits
    if shift >= 0:
        index = x << shift
    else:  # shift_round(|x|) with its sign back: (x + h) >> r, and (x + h - 1) >> r below zero
        index = x + ((1 << (-shift - 1)) + (_SIGMOID_MIDDLE << -shift))
        index -= x < 0
        return np.take(_signed_sigmoid_table(), index >> -shift, mode="clip")
    return np.take(_signed_sigmoid_table(), index + _SIGMOID_MIDDLE, mode="clip")


_SIGMOID_MIDDLE = (_HI_SIZE - 1) * _EXP_LO  #: the signed table's entry for x = 0


@functools.cache
def _signed_sigmoid_table() -> np.ndarray:
    positive = round_div(1 << (EXP_OUT_BITS + SIGMOID_BITS), (1 << EXP_OUT_BITS) + _exp_table())
    return np.concatenate(((1 << SIGMOID_BITS) - positive[:0:-1], positive))


def per_row(values: list[int]):
    """One int per row of a 2-d int64 array, as a factor or divisor of it: the int itself for a
    single row (numpy's fast scalar path), else a column."""
    return values[0] if len(values) == 1 else np.array(values, dtype=np.int64)[:, None]


def round_div(a, b):
    """a / b rounded half up, for int64 a and b > 0 (arrays or ints)."""
    return (2 * a + b) // (2 * b)


def shift_round(x, shift: int):
    """x * 2^shift for int64 x and an int shift, rounding half up where shift < 0."""
    if shift >= 0:
        return x << shift
    return (x + (1 << (-shift - 1))) >> -shift


def quantise_weight(weight: np.ndarray) -> dict[str, np.ndarray]:
    """int8 codes per row; row scale = mantissa * 2^-shift with one shift per tensor and
    mantissas <= 2^15, rounded up so |code| <= 127. float64 division and rounding are
    IEEE-exact, so the conversion is the same everywhere.

    Also "mantissa_127": round(mantissa * 2^7 / 127), the row scale with the activations'
    1/127 folded in (quantise_rows), so a linear layer rescales by a
    product and a shift."""
    w = np.asarray(weight, dtype=np.float64)
    scale = np.abs(w).max(axis=1) / 127
    shift = 15 - int(np.frexp(scale.max())[1])
    mantissa = np.ceil(np.ldexp(scale, shift))
    exact = np.ldexp(mantissa, -shift)
    codes = np.rint(w / np.where(exact > 0, exact, 1.0)[:, None]).clip(-127, 127)
    mantissa = mantissa.astype(np.int64)
    return {
        "codes": codes.astype(np.int8),
        "mantissa": mantissa,
        "mantissa_127": (mantissa * 256 + 127) // 254,
        "shift": np.array(shift, dtype=np.int64),
    }


def row_shift_round(x: np.ndarray, shifts: list[int]) -> np.ndarray:
    """`shift_round` with one shift per row of a 2-d x."""
    if len(set(shifts)) == 1:
        return shift_round(x, shifts[0])
    if max(shifts) < 0:
        right = -np.array(shifts, dtype=np.int64)[:, None]
        return (x + (1 << (right - 1))) >> right
    return np.concatenate([shift_round(row[None], s) for row, s in zip(x, shifts, strict=True)])


def rms_norm(x: np.ndarray, in_bits: int, weight: np.ndarray, eps: int, out_bits: int) -> np.ndarray:
    """x * weight / sqrt(mean(x^2) + eps) for rows of int64 x (any leading shape) in units of
    2^-in_bits.

    `weight` is in units of 2^-16, `eps` is round(epsilon * 2^60); the result is in units of
    2^-out_bits. Each row's sum of squares is taken of the row shifted to 24 significant bits
    (so it stays below 2^63 and keeps ~24 bits whatever the row's scale); the square root is
    Python's exact integer square root.
    """
    shape = x.shape
    rows = x.reshape(-1, shape[-1])
    width = shape[-1]
    cuts = [peak.bit_length() - 24 for peak in np.abs(rows).max(-1).tolist()]
    if len(cuts) == 1:
        scaled = rows[0] >> cuts[0] if cuts[0] >= 0 else rows[0] << -cuts[0]
        sums = [int(np.dot(scaled, scaled))]
    else:
        cut = np.array(cuts, dtype=np.int64)[:, None]
        scaled = np.where(cut >= 0, rows >> np.maximum(cut, 0), rows << np.maximum(-cut, 0))
        sums = (scaled * scaled).sum(-1).tolist()
    shifts, roots = [], []
    for t, total in zip(cuts, sums, strict=True):
        eps_scaled = shift_round(eps, 2 * in_bits - 2 * t - 60)
        roots.append(max(1, math.isqrt(total // width + eps_scaled)))
        shifts.append(out_bits - 16 - t)
    y = row_shift_round(rows * weight, shifts)
    return round_div(y, per_row(roots)).reshape(shape)


def quantise_rows(x: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Symmetric int8 codes (|q| <= 127, held in int64) of each row of int64 x:
    x ~ q * mantissa * 2^exponent / 127.

    The row scale is max|x| rounded up to a mantissa <= 2^15 times a power of two, so |q| <= 127
    and the products downstream stay below 2^63. The codes are round(x * R / 2^40) with
    R = floor(127 * 2^40 / scale): one product and a shift instead of a division per entry.
    Returns the codes and (mantissa, exponent) per row.
    """
    peaks = np.abs(x).max(-1)
    if len(peaks) > 1 and peaks.max() < 1 << 53:  # many rows: the same integers, per column
        _, bits = np.frexp(peaks.astype(np.float64))  # exact below 2^53: the bit length
        exponents = np.maximum(0, bits.astype(np.int64) - 15)
        mantissas = np.maximum(1, -(-peaks >> exponents))
        scales = list(zip(mantissas.tolist(), exponents.tolist(), strict=True))
        factors = ((127 << 40) // (mantissas << exponents))[:, None]
    else:
        scales, factors = [], []
        for peak in peaks.tolist():
            exponent = max(0, peak.bit_length() - 15)
            mantissa = max(1, -(-peak >> exponent))  # ceil(peak / 2^exponent)
            scales.append((mantissa, exponent))
            factors.append((127 << 40) // (mantissa << exponent))
        factors = per_row(factors)
    codes = x * factors
    codes += 1 << 39
    codes >>= 40
    return codes, scales


@functools.cache
def _rope_powers(inv_freq: tuple[str, ...], levels: int) -> np.ndarray:
    """(cos, sin) of 2^b * inv_freq for b < levels, in 2^-30: [levels, 2, n_freq] int64."""
    rows = []
    for b in range(levels):
        cos_row, sin_row = [], []
        for freq in inv_freq:
            angle = _CONTEXT.multiply(decimal.Decimal(freq), decimal.Decimal(1 << b))
            c, s = _cos_sin(angle)
            cos_row.append(_fix(c, _ROPE_WORK_BITS))
            sin_row.append(_fix(s, _ROPE_WORK_BITS))
        rows.append([cos_row, sin_row])
    return np.array(rows, dtype=np.int64)


def _cos_sin(angle: decimal.Decimal) -> tuple[decimal.Decimal, decimal.Decimal]:
    """cos and sin by Taylor series after reduction to [-pi, pi], 40 digits."""
    ctx = decimal.Context(prec=60)
    two_pi = ctx.multiply(2, _PI)
    angle = ctx.subtract(angle, ctx.multiply(two_pi, (angle / two_pi).to_integral_value(context=ctx)))
    square = ctx.multiply(angle, angle)
    cos_sum, sin_sum = decimal.Decimal(0), decimal.Decimal(0)
    cos_term, sin_term = decimal.Decimal(1), angle
    n = 0
    while abs(cos_term) > decimal.Decimal("1e-50") or abs(sin_term) > decimal.Decimal("1e-50"):
        cos_sum, sin_sum = ctx.add(cos_sum, cos_term), ctx.add(sin_sum, sin_term)
        cos_term = ctx.divide(ctx.multiply(-cos_term, square), (2 * n + 1) * (2 * n + 2))
        sin_term = ctx.divide(ctx.multiply(-sin_term, square), (2 * n + 2) * (2 * n + 3))
        n += 1
    return cos_sum, sin_sum


def rope_inverse_frequencies(theta: float, dim: int, factor: float = 1.0) -> tuple[str, ...]:
    """theta^(-2i/dim) / factor for i < dim/2, as 40-digit decimal strings."""
    base = _CONTEXT.ln(decimal.Decimal(theta))
    out = []
    for i in range(dim // 2):
        exponent = _CONTEXT.divide(decimal.Decimal(-2 * i), decimal.Decimal(dim))
        value = _CONTEXT.exp(_CONTEXT.multiply(exponent, base))
        out.append(str(_CONTEXT.divide(value, decimal.Decimal(factor))))
    return tuple(out)


def rope_table(inv_freq: tuple[str, ...], end: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position * inv_freq for positions [0, end): two [end, n_freq] int64 tables
    in units of 2^-15.

    Row p is the product of the tabulated angles 2^b for the set bits b of p (taken from the top
    bit down, in 2^-30 fixed point), so it never depends on how long the table is.
    """
    levels = max(1, (end - 1).bit_length())
    powers = _rope_powers(inv_freq, levels)
    n = len(inv_freq)
    cos = np.full((1, n), 1 << _ROPE_WORK_BITS, dtype=np.int64)
    sin = np.zeros((1, n), dtype=np.int64)
    for b in range(levels):  # rows [2^b, 2^(b+1)) = rows [0, 2^b) rotated by 2^b
        c, s = powers[b, 0], powers[b, 1]
        new_cos = shift_round(cos * c - sin * s, -_ROPE_WORK_BITS)
        new_sin = shift_round(cos * s + sin * c, -_ROPE_WORK_BITS)
        cos, sin = np.concatenate([cos, new_cos]), np.concatenate([sin, new_sin])
    shift = ROPE_BITS - _ROPE_WORK_BITS
    return shift_round(cos[:end], shift), shift_round(sin[:end], shift)


_GELU_CUBIC = _fix(decimal.Decimal("0.044715"), 24)
_GELU_SCALE = _fix(2 * _CONTEXT.sqrt(_CONTEXT.divide(2, _PI)), 24)


def silu(x: np.ndarray, bits: int) -> np.ndarray:
    """x * sigmoid(x) for int64 x in units of 2^-bits (same units out)."""
    return shift_round(x * sigmoid(x, bits), -SIGMOID_BITS)


def gelu_tanh(x: np.ndarray, bits: int) -> np.ndarray:
    """GELU, tanh form: x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), int64 x in units of 2^-bits.

    The cubic is taken of x clamped to +-16, where the sigmoid has long saturated."""
    xc = np.clip(x, -(16 << bits), 16 << bits)
    cube = shift_round(shift_round(xc * xc, -bits) * xc, -bits)
    z = xc + shift_round(cube * _GELU_CUBIC, -24)
    return shift_round(x * sigmoid(shift_round(z * _GELU_SCALE, -24), bits), -SIGMOID_BITS)
