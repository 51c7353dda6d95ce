"""The mean-scale hyperprior with a checkerboard spatial context (He et al., "Checkerboard Context
Model for Efficient Learned Image Compression", CVPR 2021), on CompressAI's CheckerboardLatentCodec.

Half of the latent positions (the anchors, (i + j) even) are coded first with the hyperprior's
Gaussians; the other half are then coded with Gaussians predicted from the decoded anchors around
them. Decoding takes two passes instead of the autoregressive models' one per position, so it
stays fast on a CPU. The context is small and residual: its last layer starts at zero, so an
untrained context codes exactly as the hyperprior does, and it can be trained on top of a shipped
model's frozen transforms (`stic train-context`).
"""

import numpy as np
import torch
import torch.nn as nn
from compressai.latent_codecs import CheckerboardLatentCodec, GaussianConditionalLatentCodec
from compressai.layers import CheckerboardMaskedConv2d
from compressai.models import MeanScaleHyperprior

from stic.image.tiled import synthesize


class ResidualEntropyParameters(nn.Module):
    """[context features, hyperprior scales, hyperprior means] -> corrected (scales, means): a
    pointwise MLP (CheckerboardLatentCodec needs a pointwise one) adding to the hyperprior's guess."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.channels = channels
        self.net = nn.Sequential(
            nn.Conv2d(3 * channels, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, 2 * channels, 1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.channels:] + self.net(x)


class MeanScaleCheckerboard(MeanScaleHyperprior):
    """mbt2018-mean's transforms and hyperprior; y coded in two checkerboard passes.

    Its bitstream has three strings: anchors, non-anchors, z."""

    STRINGS = 3

    def __init__(self, N: int = 64, M: int = 96, context_kernel: int = 3, context_hidden: int = 128, **kwargs):
        super().__init__(N, M, **kwargs)
        # one Gaussian coder, owned by the context (so the weights hold it once); the
        # `gaussian_conditional` property below is the name CompressAI's helpers use
        gaussian = self._modules.pop("gaussian_conditional")
        self.context = CheckerboardLatentCodec(
            latent_codec={"y": GaussianConditionalLatentCodec(gaussian_conditional=gaussian, quantizer="ste")},
            entropy_parameters=ResidualEntropyParameters(M, context_hidden),
            context_prediction=CheckerboardMaskedConv2d(M, M, context_kernel, padding=context_kernel // 2),
        )

    @property
    def gaussian_conditional(self):
        return self.context.y.gaussian_conditional

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        out = self.context(y, self.h_s(z_hat))
        return {"x_hat": self.g_s(out["y_hat"]), "likelihoods": {"y": out["likelihoods"]["y"], "z": z_likelihoods}}

    def quantise(self, y: torch.Tensor, hyper: torch.Tensor, rounding) -> tuple[torch.Tensor, torch.Tensor]:
        """y_hat and y's likelihoods with each position rounded by `rounding` about its own mean, as
        the coder does: the anchors' means come from the hyperprior alone, the non-anchors' from the
        rounded anchors too. `hyper` is h_s(z_hat). (For latent search, whose rounding is soft.)"""
        cb = self.context
        anchor_params = cb.entropy_parameters(torch.cat([torch.zeros_like(y), hyper], 1))
        _, anchor_means = anchor_params.chunk(2, 1)
        y_anchor = cb._keep_only(rounding(y - anchor_means) + anchor_means, "anchor")
        params = cb.entropy_parameters(torch.cat([cb.context_prediction(y_anchor), hyper], 1))
        _, means = params.chunk(2, 1)
        y_hat = y_anchor + cb._keep_only(rounding(y - means) + means, "non_anchor")
        cb._copy(params, anchor_params, "anchor")
        scales, means = params.chunk(2, 1)
        gc = self.gaussian_conditional
        likelihoods = gc._likelihood(y_hat, scales, means)
        if gc.use_likelihood_bound:
            likelihoods = gc.likelihood_lower_bound(likelihoods)
        return y_hat, likelihoods

    def compress_latents(self, y: torch.Tensor, z: torch.Tensor, step: int = 0) -> list[list[bytes]]:
        """Strings [anchors, non-anchors, z] for given latents (g_a's, or a latent search's), with
        the entropy parameters computed exactly (stic.image.exact_entropy) and y quantised with
        the finer `step` (exact_entropy.STEP_UNITS; 0: the trained unit step). One image."""
        from stic.image import exact_entropy as ee

        exact, units = ee.ExactEntropyParameters(self.state_arrays()), ee.STEP_UNITS[step]
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        hyper = exact.hyper(z_hat[0].numpy())
        y_halves = ee.unembed(y[0].detach().cpu().numpy())
        fixed_halves = np.zeros(y_halves.shape, np.int64)
        strings = []
        for half in range(2):
            indexes, means = exact.params(fixed_halves, hyper, half, units)
            residual = y_halves[half] - ee.to_float(means)
            if step:  # the encoder's own choice of symbol: nothing to keep exact here
                residual = residual.astype(np.float64) * ((1 << ee.OUT_BITS) / units)
            symbols = np.rint(residual).astype(np.int64)
            coded = self.gaussian_conditional.compress(torch.from_numpy(symbols[None]).float(), torch.from_numpy(indexes[None]))
            strings.append(coded)
            fixed_halves[half] = symbols * units + means
        return [*strings, z_strings]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The weights and entropy tables as numpy arrays (what stic.image.decoder reads)."""
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}

    def compress(self, x: torch.Tensor, step: int = 0) -> dict:
        y = self.g_a(x)
        z = self.h_a(y)
        return {"strings": self.compress_latents(y, z, step), "shape": z.shape[-2:]}

    def decompress(self, strings: list, shape, step: int = 0) -> dict:
        """Decode strings written with exact entropy parameters (every file since stic 0.2), x̂ from
        torch's g_s (stic's decoder runs g_s on ONNX Runtime: stic.image.decoder)."""
        from stic.image.exact_entropy import LatentDecoder

        if len(strings) != self.STRINGS:
            raise ValueError(f"expected {self.STRINGS} strings, got {len(strings)}")
        y_hat = LatentDecoder(self.state_arrays()).latents([s[0] for s in strings], shape, step)
        return {"x_hat": self._synthesize(y_hat)}

    def decompress_float(self, strings: list, shape) -> dict:
        """Decode stic 0.1's strings, whose entropy parameters came from the float networks (in
        sync only on machines whose float kernels agree with the encoder's)."""
        if len(strings) != self.STRINGS:
            raise ValueError(f"expected {self.STRINGS} strings, got {len(strings)}")
        z_hat = self.entropy_bottleneck.decompress(strings[2], shape)
        y_shape = (self.M, 4 * z_hat.shape[-2], 4 * z_hat.shape[-1])
        y_hat = self.context.decompress(strings[:2], y_shape, self.h_s(z_hat))["y_hat"]
        return {"x_hat": self._synthesize(y_hat[0].numpy())}

    def _synthesize(self, y_hat: np.ndarray) -> torch.Tensor:
        """torch's g_s over y_hat [M, h, w] in tiles (stic.image.tiled), clamped: 1 x 3 x H x W."""
        x_hat = synthesize(lambda y: self.g_s(torch.from_numpy(y)[None])[0].numpy(), y_hat)
        return torch.from_numpy(x_hat)[None].clamp_(0, 1)
