"""2-D convolutions of one C x H x W numpy array: the exact entropy networks' (stic.image.exact_entropy).

Why numpy: those networks run on float64 arrays of integers whose products sum below 2^53, so every
result is exact whatever BLAS sums first, and decoding the symbols needs no torch. Each
convolution is one matrix product of every kernel tap over the whole input, then the taps' outputs
added at their offsets: the work is BLAS's, the Python overhead k x k slice additions per layer.
"""

from __future__ import annotations

import numpy as np


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, padding: int = 0) -> np.ndarray:
    """Stride-1 convolution (zero padding) of x [C, H, W] with weight [O, C, k, k] -> [O, H', W']."""
    out_channels, channels, k, _ = weight.shape
    _, height, width = x.shape
    padded_h, padded_w = height + 2 * padding, width + 2 * padding
    out_h, out_w = padded_h - k + 1, padded_w - k + 1
    # rows flattened with their padding, plus one spare row: tap (i, j) of output position p reads
    # input p + i * padded_w + j, a plain offset into this buffer
    flat = np.zeros((channels, (padded_h + 1) * padded_w), x.dtype)
    flat[:, : padded_h * padded_w].reshape(channels, padded_h, padded_w)[
        :, padding : padding + height, padding : padding + width
    ] = x
    taps = weight.transpose(2, 3, 0, 1).reshape(k * k * out_channels, channels).astype(x.dtype, copy=False) @ flat
    taps = taps.reshape(k * k, out_channels, -1)
    n = out_h * padded_w
    out = taps[0, :, :n].copy()
    for t in range(1, k * k):
        offset = (t // k) * padded_w + t % k
        out += taps[t, :, offset : offset + n]
    out = out.reshape(out_channels, out_h, padded_w)[:, :, :out_w]
    if bias is not None:
        out += bias.astype(x.dtype, copy=False)[:, None, None]
    return np.ascontiguousarray(out)


def conv_transpose2d(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: int = 2, padding: int = 0,
    output_padding: int = 0,
) -> np.ndarray:  # fmt: skip
    """Transposed convolution of x [C, H, W] with weight [C, O, k, k] (torch's layout) -> [O, H', W'],
    H' = (H - 1) * stride - 2 * padding + k + output_padding: every input position's k x k patch of
    outputs from one matrix product, each tap added into place."""
    channels, height, width = x.shape
    _, out_channels, k, _ = weight.shape
    taps = weight.transpose(2, 3, 1, 0).reshape(k * k * out_channels, channels).astype(x.dtype, copy=False) @ x.reshape(
        channels, -1
    )
    taps = taps.reshape(k, k, out_channels, height, width)
    span_h, span_w = (height - 1) * stride + 1, (width - 1) * stride + 1
    full = np.zeros((out_channels, span_h + k - 1 + output_padding, span_w + k - 1 + output_padding), x.dtype)
    for i in range(k):
        for j in range(k):
            full[:, i : i + span_h : stride, j : j + span_w : stride] += taps[i, j]
    out_h = (height - 1) * stride - 2 * padding + k + output_padding
    out_w = (width - 1) * stride - 2 * padding + k + output_padding
    out = full[:, padding : padding + out_h, padding : padding + out_w]
    if bias is not None:
        out = out + bias.astype(x.dtype, copy=False)[:, None, None]
    return np.ascontiguousarray(out)
