"""The caption LM's int8 matrix products, exact on every CPU, on ONNX Runtime's MatMulInteger.

Why not `torch._int_mm`: on CPUs without VNNI (AVX2 laptops, AVX-512 before Cascade Lake, older
AMD) torch >= 2.6 falls back to a plain loop (~6x slower per token here), because oneDNN's kernels
there multiply byte pairs with vpmaddubsw, which saturates at 16 bits (torch < 2.6, or oneDNN
capped with ONEDNN_MAX_CPU_ISA, computed other logits). ONNX Runtime's MLAS has fast kernels on every ISA,
and this module feeds them only inputs no kernel can saturate on:

* the activations q (|q| <= 127) go in as two unsigned rows, q+ = max(q, 0) and q- = max(-q, 0),
  both in [0, 127]; the weights are the signed codes (|w| <= 127). A byte-pair kernel
  (vpmaddubsw, AVX2 / AVX-512BW) then sums at most 2 * 127 * 127 < 2^15 - 1; widening kernels
  (VNNI, NEON, AMX) and MLAS's sign-flipping conversions are exact anyway;
* int32 accumulation: |q+ . w| < 127^2 K < 2^31 for K < 2^17;
* the product is the difference of the two rows, in int32.

Both rows go in one product, so the weights are read once. Measured under `qemu-x86_64 -cpu
Haswell` (MLAS's AVX2 kernels): this form is exact where the zero-point form (q + 128, unsigned)
lost 1,239 of 1,248 outputs on extreme values (tests/test_emulated_cpu.py).
"""

from __future__ import annotations

import numpy as np

from stic.decode_graphs import open_graph
from stic.errors import ModelNotFoundError
from stic.paths import cache_dir

GRAPH_VERSION = 1
MAX_IN_FEATURES = 1 << 17  #: 127^2 * 2^17 < 2^31: the int32 sums cannot overflow below this


class Int8Matrix:
    """An int8 weight matrix W [out, in] (|w| <= 127) that multiplies int8 rows exactly."""

    def __init__(self, codes: np.ndarray):
        out_features, in_features = codes.shape
        if in_features >= MAX_IN_FEATURES:
            raise ModelNotFoundError(
                f"a linear layer with {in_features} inputs is too wide for the exact caption engine "
                f"(int32 sums are exact below {MAX_IN_FEATURES} inputs); `lm-float:MODEL` runs it"
            )
        self.out_features = out_features
        self._weights = np.ascontiguousarray(codes.T)  # MatMulInteger's [K, N]; must outlive the session
        path = cache_dir() / "graphs" / f"int8-product-{in_features}x{out_features}-v{GRAPH_VERSION}.onnx"
        # no arena: it would keep each matrix's largest output (a long pass's [2 rows, vocab] for
        # the head) for as long as the model is loaded, and a long pass ran slower with it
        self._session = open_graph(
            path, lambda: _graph(in_features, out_features), threads=1, external={"w": self._weights}, arena=False
        )

    def __call__(self, q: np.ndarray) -> np.ndarray:
        """q W^T as int32 [rows, out] for integer rows q [rows, in] with |q| <= 127."""
        rows = len(q)
        halves = np.empty((2 * rows, q.shape[1]), np.uint8)
        np.maximum(q, 0, out=halves[:rows], casting="unsafe")  # q+
        np.subtract(halves[:rows], q, out=halves[rows:], casting="unsafe")  # q- = q+ - q
        acc = self._session.run(None, {"q": halves})[0]
        return acc[:rows] - acc[rows:]


def _graph(in_features: int, out_features: int) -> bytes:
    """y = MatMulInteger(q, w) with w an external initialiser (given when the session opens)."""
    from onnx import TensorProto, helper

    weights = TensorProto(name="w", data_type=TensorProto.INT8, dims=[in_features, out_features])
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "given-when-the-session-opens"
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["q", "w"], ["y"])], "int8_product",
        [helper.make_tensor_value_info("q", TensorProto.UINT8, ["rows", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["rows", out_features])], [weights],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()
