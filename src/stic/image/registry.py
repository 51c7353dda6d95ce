"""Where image codecs come from: weights shipped inside the package, a local run folder, or
(for users with internet) CompressAI's zoo; and which shipped model made a given file.

Shipped models are `stic/weights/<name>.safetensors` (fp16 weights + the int32 entropy tables the
coder uses, so encoder and decoder share them exactly) beside `<name>.json` (architecture config
and training summary). Nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from stic.errors import ModelMismatchError, ModelNotFoundError
from stic.image.decoder import ExactImageDecoder
from stic.models.cache import ModelCache

if TYPE_CHECKING:  # the torch side is imported where a torch model is built: decoding needs none
    import torch

    from stic.image.learned import LearnedImageCodec

#: shipped models' torch-free decoders (stic.image.decoder), by name
DECODERS = ModelCache("image decoders", maxsize=3)

ZOO_PREFIX = "compressai:"
#: λ of CompressAI's MSE zoo models by quality 1-8 (its documented training setup: loss = rate + λ·255²·MSE)
ZOO_MSE_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


def weights_dir() -> Path:
    return Path(str(resources.files("stic") / "weights"))


def shipped_weights(name: str) -> Path:
    return weights_dir() / f"{name}.safetensors"


def _shipped_configs() -> dict[str, dict]:
    configs = {}
    for cfg_path in weights_dir().glob("*.json"):
        if cfg_path.with_suffix(".safetensors").exists():
            configs[cfg_path.stem] = json.loads(cfg_path.read_text())
    return configs


#: "mse": trained for rate + MSE; "perceptual": the same encoders with decoders fine-tuned for LPIPS
FAMILIES = ("mse", "perceptual")
#: the family `--quality` / `--bpp` pick from. MSE + the Real-ESRGAN-compact refiner: the perceptual
#: decoders win LPIPS-Alex on Kodak by far but not DISTS, and show a faint grid texture
#: (results/perceptual_kodak/report.md)
DEFAULT_FAMILY = "mse"


def all_shipped_models() -> list[str]:
    """Every model inside the package, any family."""
    return sorted(_shipped_configs())


def shipped_models(family: str | None = None) -> list[str]:
    """The rate ladder of one family (default: DEFAULT_FAMILY if shipped, else mse), lowest rate first."""
    configs = _shipped_configs()
    family = check_family(family or default_family())
    ladder = [name for name, cfg in configs.items() if _family(cfg) == family]
    return sorted(ladder, key=lambda name: (configs[name]["lmbda"], name))


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ModelNotFoundError(f"unknown model family {family!r}; choose from {', '.join(FAMILIES)}")
    return family


def default_family() -> str:
    families = {_family(cfg) for cfg in _shipped_configs().values()}
    return DEFAULT_FAMILY if DEFAULT_FAMILY in families else "mse"


def model_family(name: str) -> str:
    """The family of a shipped model."""
    configs = _shipped_configs()
    if name not in configs:
        raise ModelNotFoundError(f"no shipped image model {name!r}; shipped: {', '.join(sorted(configs))}")
    return _family(configs[name])


def recommended_refiner(name: str) -> str | None:
    """The refiner a shipped model's JSON names (`"refiner"`, set from the Kodak refine benchmark
    where its family's default does not help), or None to use the family's default."""
    return _shipped_configs().get(name, {}).get("refiner")


def _family(config: dict) -> str:
    return config.get("family", "mse")  # models shipped before families existed are MSE-trained


def load_model_weights(model, weights_path: Path):
    """Load safetensors weights (any float dtype) into a model and make it ready to code.

    If the file carries the entropy tables they are used as is; otherwise they are derived."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from stic.image.architectures import CONSTRUCTED_BUFFERS, DERIVED_BUFFERS, scale_table

    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:  # never falls back to a pickle loader
        raise ModelNotFoundError(f"cannot read image model weights {weights_path}: not a safetensors file ({exc})") from exc
    has_tables = any(k.endswith("_quantized_cdf") for k in tensors)
    if not has_tables:
        tensors.update({k: v for k, v in model.state_dict().items() if k.endswith(DERIVED_BUFFERS)})
    own = model.state_dict()
    tensors.update({k: v for k, v in own.items() if k.endswith(CONSTRUCTED_BUFFERS) and k not in tensors})
    tensors = {k: (v.to(own[k].dtype) if k in own and v.is_floating_point() else v) for k, v in tensors.items()}
    model.load_state_dict(tensors)
    if not has_tables:
        model.update(scale_table(), force=True, update_quantiles=True)
    return model.eval()


def transforms_training(config: dict) -> dict:
    """How a model's transforms were trained: its own training record, or for a context run
    (`stic train context`, transforms frozen) its base model's."""
    training = config.get("training", {})
    return training.get("base", {}) if training.get("trainable") == "context" else training


def _load_from_files(name: str, weights_path: Path, config: dict) -> LearnedImageCodec:
    from stic.image.architectures import build_model
    from stic.image.latent_search import search_objective
    from stic.image.learned import LearnedImageCodec

    model = build_model(config["model"])
    load_model_weights(model, weights_path)
    transforms = transforms_training(config)
    objective = search_objective(config.get("lmbda"), transforms.get("perceptual"), transforms.get("trainable") == "all")
    return LearnedImageCodec(name, model, file_digest(weights_path), objective)


def _load_zoo(spec: str) -> LearnedImageCodec:
    """`compressai:<architecture>:<quality>[:<metric>]`, downloaded by CompressAI's URLs (torch.hub
    cache), read with weights_only=True."""
    import torch

    from stic.image.architectures import ARCHITECTURES
    from stic.image.latent_search import search_objective
    from stic.image.learned import LearnedImageCodec

    parts = spec[len(ZOO_PREFIX):].split(":")
    if len(parts) not in (2, 3) or parts[0] not in ARCHITECTURES or not parts[1].isdigit():
        raise ModelNotFoundError(
            f"bad zoo model {spec!r}: use compressai:<architecture>:<quality>[:mse|ms-ssim] with "
            f"architecture one of {', '.join(sorted(ARCHITECTURES))}"
        )
    arch, quality, metric = parts[0], int(parts[1]), parts[2] if len(parts) == 3 else "mse"
    from compressai.zoo.image import load_pretrained, model_architectures, model_urls

    try:
        url = model_urls[arch][metric][quality]
    except KeyError:
        raise ModelNotFoundError(f"CompressAI publishes no {arch} weights for quality {quality}, metric {metric}") from None
    try:
        state = torch.hub.load_state_dict_from_url(url, progress=False, weights_only=True)
    except Exception as exc:  # network errors come in many types (URLError, HTTPError, OSError, ...)
        raise ModelNotFoundError(
            f"cannot download CompressAI zoo weights {spec} from {url} ({exc}); this needs internet "
            f"once (they are then cached by torch.hub)"
        ) from exc
    model = model_architectures[arch].from_state_dict(load_pretrained(state))
    model.update(force=True)
    digest = state_digest(arch, state)
    lmbda = ZOO_MSE_LAMBDAS[quality - 1] if metric == "mse" and 1 <= quality <= len(ZOO_MSE_LAMBDAS) else None
    return LearnedImageCodec(spec, model.eval(), digest, search_objective(lmbda))


def state_digest(architecture: str, state: dict[str, torch.Tensor]) -> bytes:
    """SHA-256 over an architecture name and every tensor's name, shape, dtype and bytes: the
    fingerprint of weights that come as a state dict (a re-published file under the same URL is
    another model)."""
    import torch

    h = hashlib.sha256(architecture.encode())
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()


def load_image_codec(name: str) -> LearnedImageCodec:
    """A shipped model by name (`stic-q1` ...), a folder with model.safetensors + config.json,
    or `compressai:<architecture>:<quality>` from CompressAI's zoo (needs internet once)."""
    if name.startswith(ZOO_PREFIX):
        return _load_zoo(name)
    config = model_config(name)
    weights = shipped_weights(name) if name in _shipped_configs() else Path(name) / "model.safetensors"
    return _load_from_files(Path(name).name, weights, config)


def model_config(name: str) -> dict:
    """The JSON config of a shipped model or of a model folder (a training run's is completed
    from its train_config.json)."""
    configs = _shipped_configs()
    if name in configs:
        return configs[name]
    folder = Path(name)
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        if "model" not in config:  # training runs store the bare architecture, and the loss beside it
            train_config = folder / "train_config.json"
            training = json.loads(train_config.read_text()) if train_config.is_file() else {}
            config = {"model": config, "lmbda": training.get("lmbda"), "training": training}
        return config
    raise ModelNotFoundError(
        f"no image model {name!r}: shipped models are {', '.join(all_shipped_models()) or 'none'}; "
        f"or give a folder with model.safetensors + config.json, or compressai:<architecture>:<quality>"
    )


def file_digest(path: Path) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def shipped_fingerprint(name: str) -> bytes:
    return file_digest(shipped_weights(name))[:4]


def codec_for_fingerprint(fingerprint: bytes, extra=()) -> LearnedImageCodec:
    """The codec whose weights made a file: one of `extra` (already loaded codecs) or a shipped model."""
    held = _held(fingerprint, extra)
    return held if held is not None else load_image_codec(_shipped_name(fingerprint, extra))


def decoder_for_fingerprint(fingerprint: bytes, extra=()):
    """What decodes a file's image section: one of `extra` (already loaded codecs), else a shipped
    model's decoder, torch-free for the checkerboard models (stic.image.decoder)."""
    held = _held(fingerprint, extra)
    if held is not None:
        return held
    name = _shipped_name(fingerprint, extra)
    if _shipped_configs()[name]["model"].get("architecture") != "stic-mean-checkerboard":
        return load_image_codec(name)
    path = shipped_weights(name)
    return DECODERS.get(name, lambda: ExactImageDecoder.from_file(name, path, file_digest(path), lambda: load_image_codec(name)))


def _held(fingerprint: bytes, extra):
    return next((codec for codec in extra if codec.fingerprint() == fingerprint), None)


def _shipped_name(fingerprint: bytes, extra=()) -> str:
    """The shipped model with this fingerprint, or an error naming the ones available."""
    names = all_shipped_models()
    if not names and not extra:
        raise ModelNotFoundError(
            f"the file needs image model {fingerprint.hex()}, and no shipped image models are installed"
        )
    for name in names:
        if shipped_fingerprint(name) == fingerprint:
            return name
    known = [f"{n} ({shipped_fingerprint(n).hex()})" for n in names] + [f"{c.name} ({c.fingerprint().hex()})" for c in extra]
    raise ModelMismatchError(
        f"the file was coded with image model fingerprint {fingerprint.hex()}, which none of the available "
        f"models has: {', '.join(known)}; give the model that made it (stic decode --model FOLDER or compressai:ARCH:QUALITY)"
    )
