"""Colour correction of x̂: an affine map in CIELAB that the encoder fits and the file carries.

At 0.005-0.03 bpp the learned codecs code chroma coarsely and pull colours and contrast towards
the mean: greens and reds turn beige-grey. The encoder has the original, so it fits, by least
squares, the affine map in CIELAB from the decoder's x̂ to the original (3x3 matrix + offset: 12
numbers, 19 bytes with the section header and checksum) and the decoder applies it to x̂ before refining. On
8 Kodak images at stic-q1 (0.012 bpp) it lowered the mean CIEDE2000 from 8.81 to 7.91 and LPIPS-Alex
from 0.697 to 0.684. Lab rather than RGB: the RGB fit lowered RGB error but raised CIEDE2000 on
some images.

The map is applied after the last exact step, in floating point: pixels may differ by a level
between machines, never the symbols. The section is optional (a decoder that predates it skips it
and shows x̂'s colours).

Payload (codec id COLOUR_LAB_AFFINE): 12 signed bytes. The map is
lab' = (I + D/128)·(lab - c) + c + o/4 with c = (50, 0, 0): D the 3x3 matrix deviation from the
identity in row-major order, then o the offset (L*, a*, b* in quarters of a unit).
"""

from __future__ import annotations

import numpy as np

from stic import codecs
from stic.container import SECTION_COLOUR, Section
from stic.errors import FormatError

_CENTRE = np.array([50.0, 0.0, 0.0])
_MATRIX_UNIT = 128
_OFFSET_UNIT = 4
PAYLOAD_BYTES = 12
#: rows converted at a time: bounds the float64 working memory on a large picture (~60 MB at 8k wide)
_ROWS = 256


# sRGB (D65, 2° observer) <-> CIELAB by the CIE formulas with skimage.color's constants, in plain
# numpy: skimage gives the same numbers (tests/test_colour.py), but its first call imports
# scipy.linalg, ~0.2 s of a cold `stic decode`.
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE = np.array([0.95047, 1.0, 1.08883])


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c > 0.04045, np.power((c + 0.055) / 1.055, 2.4), c / 12.92)
    xyz = (linear @ _XYZ_FROM_RGB.T) / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    x, y, z = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * y - 16.0, 500.0 * (x - y), 200.0 * (y - z)], axis=-1)


def _from_lab(lab: np.ndarray) -> np.ndarray:
    y = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([lab[..., 1] / 500.0 + y, y, np.maximum(y - lab[..., 2] / 200.0, 0)], axis=-1)
    xyz = np.where(f > 0.2068966, np.power(f, 3.0), (f - 16.0 / 116.0) / 7.787) * _WHITE
    linear = xyz @ _RGB_FROM_XYZ.T
    with np.errstate(invalid="ignore"):  # the power's unused branch at negative values
        c = np.where(linear > 0.0031308, 1.055 * np.power(linear, 1 / 2.4) - 0.055, linear * 12.92)
    return np.rint(np.clip(c, 0, 1) * 255.0).astype(np.uint8)


class ColourMap:
    """The quantised map: `deviation` (3x3 int) and `offset` (3 int), in the payload's units."""

    def __init__(self, deviation: np.ndarray, offset: np.ndarray):
        self.deviation = np.asarray(deviation, dtype=np.int64).reshape(3, 3)
        self.offset = np.asarray(offset, dtype=np.int64).reshape(3)

    @classmethod
    def fit(cls, xhat: np.ndarray, original: np.ndarray) -> ColourMap | None:
        """The least-squares map from x̂ to the original (both HxWx3 uint8), quantised; None when
        the quantised map does not lower x̂'s squared error in Lab (nothing to gain). Solved from
        normal equations summed over bands of rows, so memory stays bounded on a large picture."""
        gram, cross, target_sq = np.zeros((4, 4)), np.zeros((4, 3)), 0.0  # X^T X, X^T Y, sum |Y|^2
        for top in range(0, xhat.shape[0], _ROWS):
            source = _to_lab(xhat[top : top + _ROWS]).reshape(-1, 3) - _CENTRE
            target = _to_lab(original[top : top + _ROWS]).reshape(-1, 3) - _CENTRE
            design = np.c_[source, np.ones(len(source))]
            gram += design.T @ design
            cross += design.T @ target
            target_sq += float(np.sum(target**2))
        count = gram[3, 3]

        def error(coefficients: np.ndarray) -> float:  # mean |X b - Y|^2, from the sums
            return (np.sum(coefficients * (gram @ coefficients)) - 2 * np.sum(coefficients * cross) + target_sq) / count

        solution = np.linalg.lstsq(gram, cross, rcond=None)[0]  # rows: matrix^T, then offset
        deviation = np.clip(np.rint((solution[:3].T - np.eye(3)) * _MATRIX_UNIT), -128, 127)
        matrix = np.eye(3) + deviation / _MATRIX_UNIT
        mean_offset = (cross[3] - gram[3, :3] @ matrix.T) / count  # the best offset for that matrix
        offset = np.clip(np.rint(mean_offset * _OFFSET_UNIT), -128, 127)
        identity = np.vstack([np.eye(3), np.zeros(3)])
        quantised = np.vstack([matrix.T, offset / _OFFSET_UNIT])
        return cls(deviation, offset) if error(quantised) < error(identity) else None

    def _map(self, lab: np.ndarray) -> np.ndarray:
        matrix = np.eye(3) + self.deviation / _MATRIX_UNIT
        return (lab - _CENTRE) @ matrix.T + _CENTRE + self.offset / _OFFSET_UNIT

    def apply(self, image: np.ndarray) -> np.ndarray:
        """x̂ (HxWx3 uint8) with the map applied, in bands of rows."""
        out = np.empty_like(image)
        for top in range(0, image.shape[0], _ROWS):
            band = image[top : top + _ROWS]
            out[top : top + _ROWS] = _from_lab(self._map(_to_lab(band)))
        return out

    def section(self) -> Section:
        payload = np.r_[self.deviation.reshape(-1), self.offset].astype(np.int8).tobytes()
        return Section(SECTION_COLOUR, codecs.COLOUR_LAB_AFFINE, payload, required=False)

    @classmethod
    def from_section(cls, section: Section | None) -> ColourMap | None:
        """The map a colour section holds; None for no section or a layout this stic does not know
        (the section is optional: skip it)."""
        if section is None or section.codec_id != codecs.COLOUR_LAB_AFFINE:
            return None
        if len(section.payload) != PAYLOAD_BYTES:
            raise FormatError(f"corrupt colour section: {len(section.payload)} bytes, expected {PAYLOAD_BYTES}")
        values = np.frombuffer(section.payload, dtype=np.int8).astype(np.int64)
        return cls(values[:9], values[9:])


def placeholder_section() -> Section:
    """A section of the size a fitted one has (the identity map): what `--bpp` counts while it
    compares candidate files, before fitting the map for the one it keeps."""
    return ColourMap(np.zeros(9), np.zeros(3)).section()
