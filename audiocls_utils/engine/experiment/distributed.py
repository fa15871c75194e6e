"""Train on several GPUs (or CPU processes) with DistributedDataParallel, launched by torchrun.

    torchrun --nproc_per_node=N -m audiocls_utils train ...

torchrun starts N processes and describes them in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT). Each rank trains on its share of the clips; gradients are
averaged after every step, so all ranks hold the same weights; metrics are summed over ranks;
rank 0 alone prints, tracks and writes files. gloo is the backend on the CPU, nccl on CUDA.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ...errors import AudioclsError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among those torchrun started (a lone process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Return True for the rank that prints, tracks and writes files."""
        return self.rank == 0


def is_main_process() -> bool:
    """Return True unless torchrun started this process as a rank other than 0."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def quiet_unless_main() -> Iterator[None]:
    """Silence print() in ranks other than 0, so that a DDP run prints each line once."""
    if is_main_process():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def start_distributed(device: torch.device) -> tuple[Ranks, torch.device, bool]:
    """Join the process group that torchrun describes in the environment (WORLD_SIZE > 1).

    Returns the ranks, this rank's device (cuda:LOCAL_RANK on GPUs) and whether this call
    started the group (and so must end it). gloo on the CPU, nccl on CUDA.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Ranks(), device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size()), device, started


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Return `tensor` reduced over all ranks by `op` (sum, min or max); itself in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    on_cuda = dist.get_backend() == "nccl"  # nccl reduces CUDA tensors only, gloo CPU ones
    reduced = tensor.to(torch.device("cuda", torch.cuda.current_device()) if on_cuda else "cpu",
                        copy=True)
    dist.all_reduce(reduced, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
                                 "max": dist.ReduceOp.MAX}[op])
    return reduced.to(tensor.device)


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank, so that all evaluate alike."""
    if dist.is_available() and dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def check_ranks_agree(model: nn.Module) -> float:
    """Return a checksum of the weights; raise if any rank's differs (DDP must keep them equal)."""
    checksum = torch.tensor([sum(float(t.double().sum()) for t in model.state_dict().values()
                                 if t.is_floating_point())], dtype=torch.float64)
    low, high = float(all_reduce(checksum, "min")), float(all_reduce(checksum, "max"))
    if low != high:
        raise AudioclsError(f"DDP ranks ended with different weights (checksums {low} to {high}): "
                            "report this as a bug")
    return high
