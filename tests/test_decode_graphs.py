"""The decoder's float networks as ONNX Runtime graphs (stic.decode_graphs): they compute what the
torch networks compute, are built once and cached, and a damaged cache is rebuilt."""

import numpy as np
import torch

from stic import decode_graphs
from stic.refine.rrdbnet import SRVGGNetCompact


def _compact(seed: int = 0) -> SRVGGNetCompact:
    torch.manual_seed(seed)
    net = SRVGGNetCompact(num_conv=2).eval()
    for p in net.body[1::2]:  # PReLU slopes other than the default, so that a wrong one shows
        torch.nn.init.uniform_(p.weight, -0.5, 0.5)
    return net


def test_compact_graph_computes_the_torch_network(monkeypatch, tmp_path):
    monkeypatch.setenv("STIC_CACHE", str(tmp_path))
    net = _compact()
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).random((3, 13, 17), dtype=np.float32)
    session = decode_graphs.session("test-compact", decode_graphs.digest_of(state), lambda: decode_graphs.compact_graph(state))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)[None])[0].numpy()
    out = decode_graphs.run(session, x)
    assert out.shape == (3, 52, 68) and np.abs(out - expected).max() < 1e-5


def test_graphs_are_cached_on_disk_and_rebuilt_when_damaged(monkeypatch, tmp_path):
    monkeypatch.setenv("STIC_CACHE", str(tmp_path))
    state = {k: v.detach().numpy() for k, v in _compact(1).state_dict().items()}
    digest, builds = decode_graphs.digest_of(state), []

    def build() -> bytes:
        builds.append(1)
        return decode_graphs.compact_graph(state)

    x = np.random.default_rng(1).random((3, 8, 8), dtype=np.float32)
    first = decode_graphs.run(decode_graphs.session("test-cache", digest, build), x)
    (cached,) = (tmp_path / "graphs").glob("test-cache-*.onnx")
    decode_graphs.SESSIONS.clear()
    assert np.array_equal(decode_graphs.run(decode_graphs.session("test-cache", digest, build), x), first)
    assert len(builds) == 1  # the second session came from the file
    cached.write_bytes(b"not a graph")
    decode_graphs.SESSIONS.clear()
    assert np.array_equal(decode_graphs.run(decode_graphs.session("test-cache", digest, build), x), first)
    assert len(builds) == 2 and cached.read_bytes() != b"not a graph"
    decode_graphs.SESSIONS.clear()
    assert decode_graphs.digest_of(state) != decode_graphs.digest_of({**state, "body.0.bias": state["body.0.bias"] + 1})
