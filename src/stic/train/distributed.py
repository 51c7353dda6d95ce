"""Data-parallel training under `torchrun` (gloo on CPU, nccl on GPU), and the device choice.

Every rank holds the whole model and its own crop stream (seed + rank); after each backward the
gradients are averaged over ranks with one all_reduce per optimizer, which is what DDP does. We
average explicitly instead of wrapping the model in DistributedDataParallel because three
optimizers step on three different graphs (the codec, CompressAI's aux loss on the quantiles, the
discriminator), and a frozen encoder (trainable="decoder") or the unused quantiles would otherwise
need find_unused_parameters. Rank 0 decides when to stop and checkpoint (`any_rank` keeps every
rank in step), logs, validates and writes the checkpoint; all ranks read it when resuming.

Without torchrun's environment (WORLD_SIZE unset or 1) every function here is a no-op.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """"auto" is cuda when available, else cpu; a bare "cuda" means this rank's GPU."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(choice)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def start(device_choice: str = "auto") -> Context:
    """Join the process group torchrun describes in the environment (if any) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(device_choice, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # kept for the life of the process: a second train() in the same workers reuses it
        # (gloo cannot re-initialise in the same workers: its peers' stale addresses are refused)
        atexit.register(_leave)
    return Context(rank, world, device)


_finished = False  #: this rank's last train() ended normally (finish() was reached)


def _leave(timeout: timedelta = timedelta(seconds=60)) -> None:
    """Destroy the process group once every rank is ready to.

    Right after the last collective, a fast rank's teardown can close connections that a slower
    rank's gloo is still draining, and that rank aborts ("terminate called without an active
    exception" at exit, pytorch/gloo#155). So ranks that finished first meet on the rendezvous
    store, which gloo does not use; a rank that failed leaves at once (its peers, waiting on it in a
    collective, fail as soon as its connections close), and one that never arrives delays the
    others' exit by `timeout` at most."""
    if not dist.is_initialized():
        return
    if _finished:
        try:
            store = dist.distributed_c10d._get_default_store()  # no public accessor
            store.set(f"stic/leaving/{dist.get_rank()}", "1")
            store.wait([f"stic/leaving/{rank}" for rank in range(dist.get_world_size())], timeout)
        except RuntimeError:  # torch's DistStoreError (timeout) or DistNetworkError: leave anyway
            pass
    dist.destroy_process_group()


def finish() -> None:
    """Wait for every rank (rank 0 may still be writing the last checkpoint)."""
    global _finished
    if _active():
        dist.barrier()
    _finished = True


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _flag_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank if it is True on any rank (rank 0's decisions reach all ranks this way)."""
    if not _active():
        return flag
    value = torch.tensor([float(flag)], device=_flag_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def average_gradients(parameters) -> None:
    """Average the gradients of `parameters` over ranks (one flat all_reduce; a missing grad counts as 0)."""
    if not _active():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Give every rank rank 0's weights and buffers."""
    if not _active():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.numel():  # CompressAI's entropy tables are empty until update()
            dist.broadcast(tensor.data, src=0)


def gather(obj) -> list:
    """Every rank's `obj` (small, picklable; e.g. crop-sampler RNG states), in rank order."""
    if not _active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
