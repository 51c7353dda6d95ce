"""No refinement: x̂ as decoded. The baseline every refiner is measured against."""

from __future__ import annotations

import numpy as np


class IdentityRefiner:
    name = "identity"
    refiner_id = None  # never written: a file without a refine section is decoded as is
    uses_caption = False

    def fingerprint(self) -> bytes:
        return b""

    def params(self) -> bytes:
        return b""

    def refine(self, image: np.ndarray, caption: str | None, seed: int) -> np.ndarray:
        return image
