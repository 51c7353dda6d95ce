"""Text-conditioned diffusion refiner (diffusers img2img), for users who have the weights.

Why img2img and not a ControlNet/tile condition: img2img needs only a base text-to-image model
(a Stable Diffusion 1.x/2.x or SDXL checkpoint, SD-Turbo/SDXL-Turbo for 1-4 steps, or a local
copy), starts *from* x̂ — so composition and colours stay those of the decoded image — and one
number, `strength`, sets how much the generator may repaint. A tile ControlNet would hold
structure tighter but doubles the weights a decoder needs. Transformer pipelines (SD3, Flux) are
refused with one line: their img2img takes other arguments (Flux has no negative prompt or true
guidance) and their native tiles are 1024 px.

Everything that changes the pixels is fixed by the file: the caption is the prompt; strength,
guidance scale, steps and the negative prompt are the refine section's parameters; the seed is
stored beside them. Images larger than the model's native size are refined in overlapping tiles
(each tile seeded from the file's seed and its index), blended with linear ramps across the whole
overlap; smaller ones are enlarged to the native size first, since the models were trained there.
Guidance and negative prompt are passed through for real (the published code silently dropped
them); tests check that each changes the output. Noise is drawn on the CPU, so a GPU decode starts
from the same noise (its pixels may still differ by float rounding).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from stic import codecs
from stic.container import decode_varint, encode_varint
from stic.errors import FormatError, InputError, ModelNotFoundError

#: used when neither the caller nor $STIC_DIFFUSION_MODEL names a model
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_NEGATIVE_PROMPT = ""
_MULTIPLE = 8  # the VAE's downsampling factor: tile sides must be multiples of it


@dataclass(frozen=True)
class DiffusionSettings:
    strength: float = 0.35  # fraction of the noise schedule repainted (0 = x̂, 1 = from noise)
    guidance_scale: float = 5.0
    steps: int = 30
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT

    def __post_init__(self):
        if not 0.01 <= self.strength <= 1:
            raise InputError(f"diffusion strength must be in 0.01..1, got {self.strength}")
        if not 0 <= self.guidance_scale <= 50:
            raise InputError(f"guidance scale must be in 0..50, got {self.guidance_scale}")
        if not 1 <= self.steps <= 1000:
            raise InputError(f"diffusion steps must be in 1..1000, got {self.steps}")
        # the file keeps strength in 1/100 and guidance in 1/10: encode with what decoding will read
        object.__setattr__(self, "strength", round(self.strength * 100) / 100)
        object.__setattr__(self, "guidance_scale", round(self.guidance_scale * 10) / 10)
        if int(self.steps * self.strength) < 1:  # img2img runs int(steps * strength) denoising steps
            raise InputError(
                f"diffusion steps x strength must be at least 1 (got {self.steps} x {self.strength}): "
                "raise --steps or --strength"
            )

    def to_bytes(self) -> bytes:
        """strength in 1/100 (varint), guidance in 1/10 (varint), steps (varint), negative prompt
        as the remaining UTF-8 bytes (usually none)."""
        return (
            encode_varint(round(self.strength * 100))
            + encode_varint(round(self.guidance_scale * 10))
            + encode_varint(self.steps)
            + self.negative_prompt.encode("utf-8")
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DiffusionSettings:
        values, pos = [], 0
        for _ in range(3):
            value, pos = decode_varint(data, pos, "diffusion parameter")
            values.append(value)
        try:
            negative = data[pos:].decode("utf-8")
            return cls(values[0] / 100, values[1] / 10, values[2], negative)
        except (UnicodeDecodeError, InputError) as exc:
            raise FormatError(f"refine section: invalid diffusion parameters ({exc})") from exc


def load_pipeline(model: str, device: str | None = None, dtype: str | None = None):
    """An img2img pipeline from a model id or local directory, placed by stic.placement (default:
    CUDA in bfloat16 when a GPU is visible, else the CPU in float32)."""
    from stic.placement import resolve

    device, torch_dtype = resolve(device, dtype)
    try:
        from diffusers import AutoPipelineForImage2Image
    except ImportError as exc:
        raise ModelNotFoundError("the diffusion refiner needs diffusers: pip install diffusers") from exc
    try:
        pipe = AutoPipelineForImage2Image.from_pretrained(model, dtype=torch_dtype, safety_checker=None)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot load diffusion model {model!r} for the diffusion refiner (give a local "
            f"diffusers directory or a reachable model id with --refiner-model, or decode with "
            f"--no-refine): {exc}"
        ) from exc
    check_supported(pipe, model)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def check_supported(pipe, model: str) -> None:
    """UNet img2img pipelines only (SD 1.x/2.x, SDXL and their Turbo versions)."""
    if getattr(pipe, "unet", None) is None:
        raise InputError(
            f"diffusion model {model!r} is a {type(pipe).__name__}: the diffusion refiner runs UNet pipelines "
            "(Stable Diffusion 1.x/2.x, SDXL, SD-Turbo, SDXL-Turbo), not transformer ones such as SD3 or Flux"
        )


#: the SD 1.x/2.x components, hashed first and in this order; any further model or tokenizer
#: component (SDXL's text_encoder_2 and tokenizer_2) is hashed after them, by name
_CORE_MODULES = ("unet", "vae", "text_encoder")
#: config values that change a diffusers component's outputs given its weights, read by name
#: (absent ones are skipped; the text encoders are transformers models, read by stic.models.hf)
_BEHAVIOUR_KEYS = {
    "unet": (
        "sample_size", "flip_sin_to_cos", "freq_shift", "act_fn", "norm_eps", "norm_num_groups",
        "attention_head_dim", "num_attention_heads", "upcast_attention", "resnet_time_scale_shift",
        "only_cross_attention", "dual_cross_attention", "mid_block_scale_factor", "downsample_padding",
        "time_embedding_type", "timestep_post_act", "addition_embed_type", "class_embeddings_concat",
        "cross_attention_norm", "attention_type", "center_input_sample", "resnet_out_scale_factor",
        "resnet_skip_time_act", "time_embedding_act_fn", "mid_block_only_cross_attention",
    ),
    "vae": ("scaling_factor", "shift_factor", "latents_mean", "latents_std", "force_upcast", "act_fn", "norm_num_groups"),
    "scheduler": (
        "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type",
        "timestep_spacing", "steps_offset", "clip_sample", "clip_sample_range", "set_alpha_to_one",
        "rescale_betas_zero_snr", "thresholding", "dynamic_thresholding_ratio", "sample_max_value",
        "interpolation_type", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "sigma_min",
        "sigma_max", "timestep_type", "final_sigmas_type", "variance_type", "skip_prk_steps", "solver_order",
        "algorithm_type", "solver_type", "lower_order_final", "euler_at_final", "lambda_min_clipped",
        "use_lu_lambdas", "solver_p", "predict_x0", "disable_corrector", "original_inference_steps",
        "timestep_scaling",
    ),
}  # fmt: skip


def pipeline_fingerprint(pipe) -> bytes:
    """4 bytes over the config values that change outputs (read by name, never a library's
    serialisation of a config), every tokenizer's vocabulary and length limit, the scheduler's
    kind, and a fixed sample of every weight tensor (hashing all of a multi-GB model on every
    decode would take seconds). Weights are sampled in float32, so a bfloat16 or GPU copy of the
    same checkpoint has the same fingerprint only where its sampled values survive the cast."""
    from stic.models.hf import behaviour

    def values(name, module) -> dict:
        if name in _BEHAVIOUR_KEYS:
            return {k: module.config[k] for k in _BEHAVIOUR_KEYS[name] if module.config.get(k) is not None}
        return behaviour(module.config)  # a transformers text encoder

    h = hashlib.blake2b(digest_size=4)
    for name, module in _modules(pipe):
        h.update(name.encode())
        h.update(json.dumps(values(name, module), sort_keys=True, default=str).encode())
        _hash_weight_sample(h, module)
    for name, tokenizer in _tokenizers(pipe):
        h.update(name.encode() + str(tokenizer.model_max_length).encode())
        h.update(json.dumps(sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])).encode())
    h.update(type(pipe.scheduler).__name__.encode())
    h.update(json.dumps(values("scheduler", pipe.scheduler), sort_keys=True, default=str).encode())
    return h.digest()


def legacy_pipeline_fingerprint(pipe) -> bytes:
    """The fingerprint stic < 0.4 wrote (it hashed diffusers' serialisation of each config, which a
    diffusers release may change): computed only to recognise the files those versions made."""
    h = hashlib.blake2b(digest_size=4)
    for name, module in _modules(pipe):
        h.update(name.encode())
        h.update(json.dumps(_plain(module.config), sort_keys=True, default=str).encode())
        _hash_weight_sample(h, module)
    h.update(json.dumps(pipe.tokenizer.get_vocab(), sort_keys=True).encode())
    for name, tokenizer in _tokenizers(pipe):
        if name != "tokenizer":
            h.update(name.encode() + json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    h.update(type(pipe.scheduler).__name__.encode())
    h.update(json.dumps(_plain(pipe.scheduler.config), sort_keys=True, default=str).encode())
    return h.digest()


def _modules(pipe) -> list[tuple[str, torch.nn.Module]]:
    components = getattr(pipe, "components", {})
    extra = sorted(n for n, c in components.items() if isinstance(c, torch.nn.Module) and n not in _CORE_MODULES)
    return [(name, getattr(pipe, name)) for name in (*_CORE_MODULES, *extra)]


def _tokenizers(pipe) -> list[tuple[str, object]]:
    components = getattr(pipe, "components", {})
    extra = sorted(n for n, c in components.items() if n.startswith("tokenizer_") and c is not None)
    return [("tokenizer", pipe.tokenizer)] + [(name, components[name]) for name in extra]


def _hash_weight_sample(h, module: torch.nn.Module) -> None:
    for key, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        stride = max(1, flat.numel() // 4096)
        h.update(key.encode() + str(tuple(tensor.shape)).encode())
        h.update(flat[::stride].to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())


_LEGACY_IGNORED = {"transformers_version", "dtype", "torch_dtype", "name_or_path", "architectures"}


def _plain(config) -> dict:
    items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {k: v for k, v in items.items() if not k.startswith("_") and k not in _LEGACY_IGNORED}


def _starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    count = -(-(length - tile) // (tile * 3 // 4)) + 1  # at least 1/4 overlap
    return [round(i * (length - tile) / (count - 1)) // _MULTIPLE * _MULTIPLE for i in range(count)]


def _ramps(starts: list[int], tile: int) -> list[np.ndarray]:
    """Blend weights along one axis for tiles at `starts`: each rises linearly across the whole
    overlap with the tile before it and falls across the whole overlap with the tile after it, so
    neighbours' weights sum to one everywhere and no part of an overlap is a flat average."""
    weights = []
    for k, start in enumerate(starts):
        weight = np.ones(tile)
        if k > 0:
            overlap = starts[k - 1] + tile - start
            weight[:overlap] = (np.arange(overlap) + 0.5) / overlap
        if k < len(starts) - 1:
            overlap = start + tile - starts[k + 1]
            weight[tile - overlap :] = np.minimum(weight[tile - overlap :], (np.arange(overlap)[::-1] + 0.5) / overlap)
        weights.append(weight)
    return weights


class DiffusionRefiner:
    """img2img from x̂ with the caption as prompt; tiled at the model's native size."""

    name = "diffusion"
    refiner_id = codecs.REFINE_DIFFUSION_IMG2IMG
    uses_caption = True  # the prompt

    def __init__(self, pipe, settings: DiffusionSettings | None = None):
        check_supported(pipe, type(pipe).__name__)
        self.pipe = pipe
        self.settings = settings or DiffusionSettings()
        self.tile = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        self._fingerprint: bytes | None = None
        self._legacy_fingerprint: bytes | None = None

    def fingerprint(self) -> bytes:
        if self._fingerprint is None:
            self._fingerprint = pipeline_fingerprint(self.pipe)
        return self._fingerprint

    def legacy_fingerprint(self) -> bytes:
        """What stic < 0.4 wrote for these weights (files it made still decode)."""
        if self._legacy_fingerprint is None:
            self._legacy_fingerprint = legacy_pipeline_fingerprint(self.pipe)
        return self._legacy_fingerprint

    def params(self) -> bytes:
        return self.settings.to_bytes()

    def refine(self, image: np.ndarray, caption: str | None, seed: int) -> np.ndarray:
        height, width = image.shape[:2]
        scale = self.tile / min(height, width)
        if scale <= 1:
            return self._tiled(image, caption or "", seed)
        # below the native size the models paint out of distribution: refine it enlarged
        size = (max(self.tile, round(width * scale)), max(self.tile, round(height * scale)))
        enlarged = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
        refined = self._tiled(enlarged, caption or "", seed)
        return np.asarray(Image.fromarray(refined).resize((width, height), Image.Resampling.LANCZOS))

    def _tiled(self, image: np.ndarray, prompt: str, seed: int) -> np.ndarray:
        height, width = image.shape[:2]
        pad = ((0, -height % _MULTIPLE), (0, -width % _MULTIPLE), (0, 0))
        padded = np.pad(image, pad, mode="edge")
        H, W = padded.shape[:2]
        tile_h, tile_w = min(self.tile, H), min(self.tile, W)
        acc = np.zeros((H, W, 3))
        weights = np.zeros((H, W, 1))
        tops, lefts = _starts(H, tile_h), _starts(W, tile_w)
        index = 0
        for top, rows in zip(tops, _ramps(tops, tile_h), strict=True):
            for left, columns in zip(lefts, _ramps(lefts, tile_w), strict=True):
                crop = padded[top : top + tile_h, left : left + tile_w]
                result = self._run(crop, prompt, seed, index)
                w = np.outer(rows, columns)[..., None]
                acc[top : top + tile_h, left : left + tile_w] += w * result
                weights[top : top + tile_h, left : left + tile_w] += w
                index += 1
        out = np.clip(np.round(acc / weights), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(out[:height, :width])

    def _run(self, crop: np.ndarray, prompt: str, seed: int, index: int) -> np.ndarray:
        s = self.settings
        generator = torch.Generator("cpu").manual_seed((seed << 16) + index)
        with torch.inference_mode():
            result = self.pipe(
                prompt=prompt,
                image=Image.fromarray(crop),
                strength=s.strength,
                guidance_scale=s.guidance_scale,
                num_inference_steps=s.steps,
                negative_prompt=s.negative_prompt or None,
                generator=generator,
                output_type="np",
            ).images[0]
        return np.asarray(result, dtype=np.float64) * 255
