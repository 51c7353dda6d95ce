"""The decoder's float networks (the image models' synthesis g_s, the compact ×4 refiners) as ONNX
graphs run by ONNX Runtime.

Why: decoding needs no gradients and no training code, and `import torch` alone takes 1.4-1.7 s
on the 2-core machines stic is measured on, longer than decoding a 768x512 image; ONNX Runtime
imports in ~0.15 s and runs these convolutions about as fast as torch. Each graph is built once
from the network's weights with the `onnx` package (~1 s to import, so only then), written to
stic's cache folder under a name that holds the weights' digest and GRAPHS_VERSION, and loaded from
there afterwards. The networks are float: their pixels may differ from torch's, or another
machine's, by a level; no symbol depends on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from stic.models.cache import ModelCache
from stic.paths import cache_dir, replace_atomically
from stic.threads import available_cores

#: bumped whenever a builder below changes the graph it writes for the same weights
GRAPHS_VERSION = 1
_OPSET, _IR_VERSION = 17, 8  # what every ONNX Runtime since 1.15 reads

SESSIONS = ModelCache("decoder graphs", maxsize=4)


def session(kind: str, digest: bytes, build: Callable[[], bytes]):
    """An ONNX Runtime session for the graph of `kind` with weights of `digest`, from the cache
    folder, or built by `build()` and cached first."""
    key = f"{kind}-{digest.hex()[:32]}-v{GRAPHS_VERSION}"
    return SESSIONS.get(key, lambda: open_graph(cache_dir() / "graphs" / f"{key}.onnx", build))


def open_graph(
    path: Path, build: Callable[[], bytes], threads: int | None = None, external: Mapping | None = None,
    arena: bool = True,
):  # fmt: skip
    """A session on the graph cached at `path`; a missing or unreadable one (a damaged cache, a
    graph from an ONNX Runtime that reads no more) is built again first. `external` gives the
    arrays of initialisers the graph declares as external data (used in place, not copied into
    the graph); `threads` the intra-op threads (default: every core this process may use);
    `arena=False` frees each run's buffers instead of keeping the largest in a memory arena."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # fatal only: a damaged cache is handled below
    # idle workers sleep instead of spinning, so that they leave the caption's thread its core (the
    # caption decodes beside the image, stic.pipeline): a captioned kodim05 decoded in 1.16-1.21 s
    # against 1.30-1.42 s spinning, image-only files alike (0.73 s)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if external:
        names = list(external)
        options.add_external_initializers(names, [onnxruntime.OrtValue.ortvalue_from_numpy(external[n]) for n in names])
    if path.is_file():
        try:
            return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:  # ONNX Runtime's errors have no common base class but Exception
            pass
    graph = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda tmp: tmp.write_bytes(graph))
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess, x: np.ndarray) -> np.ndarray:
    """One [C, H, W] float32 array through a one-input, one-output graph."""
    return sess.run(None, {"x": np.ascontiguousarray(x[None], dtype=np.float32)})[0][0]


def digest_of(state: Mapping[str, np.ndarray], prefix: str = "") -> bytes:
    """SHA-256 over the names, shapes, dtypes and bytes of the arrays under `prefix`."""
    h = hashlib.sha256()
    for key in sorted(k for k in state if k.startswith(prefix)):
        value = np.ascontiguousarray(state[key])
        h.update(f"{key}{value.shape}{value.dtype}".encode())
        h.update(value.tobytes())
    return h.digest()


class _Graph:
    """A small graph under construction: float32 initialisers, nodes, one input x, one output."""

    def __init__(self):
        import onnx.helper
        import onnx.numpy_helper

        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.nodes, self.initialisers, self.count = [], [], 0

    def constant(self, value: np.ndarray) -> str:
        name = f"c{len(self.initialisers)}"
        self.initialisers.append(self.numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attributes) -> str:
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attributes))
        return out

    def serialise(self, output: str) -> bytes:
        from onnx import TensorProto

        h = self.helper
        shape = [1, None, None, None]
        graph = h.make_graph(
            self.nodes, "stic", [h.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [h.make_tensor_value_info(output, TensorProto.FLOAT, shape)], self.initialisers,
        )  # fmt: skip
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", _OPSET)], ir_version=_IR_VERSION)
        return model.SerializeToString()


def _gdn_parameter(state: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """A GDN parameter as CompressAI's NonNegativeParametrizer gives it: max(x, bound)^2 - pedestal."""
    bound = np.float32(np.asarray(state[f"{name}_reparam.lower_bound.bound"]).reshape(-1)[0])
    pedestal = np.float32(np.asarray(state[f"{name}_reparam.pedestal"]).reshape(-1)[0])
    value = np.maximum(np.asarray(state[name], dtype=np.float32), bound)
    return value * value - pedestal


def synthesis_graph(state: Mapping[str, np.ndarray]) -> bytes:
    """g_s of CompressAI's hyperprior family (mbt2018-mean and stic's checkerboard model): four
    5x5 stride-2 transposed convolutions, inverse GDN between them."""
    g = _Graph()
    x = "x"
    for i in (0, 2, 4, 6):
        weight = state[f"g_s.{i}.weight"]
        k = weight.shape[-1]
        x = g.node("ConvTranspose", [x, g.constant(weight), g.constant(state[f"g_s.{i}.bias"])], strides=[2, 2],
                   pads=[k // 2] * 4, output_padding=[1, 1])  # fmt: skip
        if i < 6:  # inverse GDN: x * sqrt(beta + gamma (x^2))
            gamma = _gdn_parameter(state, f"g_s.{i + 1}.gamma")[:, :, None, None]
            norm = g.node("Conv", [g.node("Mul", [x, x]), g.constant(gamma), g.constant(_gdn_parameter(state, f"g_s.{i + 1}.beta"))])
            x = g.node("Mul", [x, g.node("Sqrt", [norm])])
    return g.serialise(x)


def compact_graph(state: Mapping[str, np.ndarray]) -> bytes:
    """Real-ESRGAN's SRVGGNetCompact ×4 (stic.refine.rrdbnet): 3x3 convolutions with PReLU, pixel
    shuffle, plus the nearest-upsampled input."""
    g = _Graph()
    x = "x"
    layers = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    for i in layers:
        weight = np.asarray(state[f"body.{i}.weight"])
        if weight.ndim == 4:
            x = g.node("Conv", [x, g.constant(weight), g.constant(state[f"body.{i}.bias"])], pads=[1, 1, 1, 1])
        else:
            x = g.node("PRelu", [x, g.constant(weight.reshape(-1, 1, 1))])
    shuffled = g.node("DepthToSpace", [x], blocksize=4, mode="CRD")
    upsampled = g.node("Resize", ["x", "", g.constant(np.array([1, 1, 4, 4]))], mode="nearest")
    return g.serialise(g.node("Add", [shuffled, upsampled]))
