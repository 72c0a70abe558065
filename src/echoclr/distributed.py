"""The only module that touches ``torch.distributed`` state.

Runs launched by ``torchrun`` are initialised from the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT); with no RANK set the same code runs as one process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn

from echoclr.runs import pick_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_local_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """This process's LOCAL_RANK when torchrun started it (it sets RANK), else None."""
    environ = os.environ if environ is None else environ
    return int(environ.get("LOCAL_RANK", 0)) if "RANK" in environ else None


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group from torchrun's environment (NCCL on GPU, gloo on CPU), and
    pick this process's device (:func:`echoclr.runs.pick_device`: under torchrun, cuda means
    ``cuda:LOCAL_RANK``)."""
    local_rank = torchrun_local_rank()
    dev = pick_device(device, local_rank=local_rank)
    if local_rank is None:
        return DistInfo(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every process along dim 0, keeping gradients.

    The backward pass sums each slice's gradient over processes, so a per-process mean loss
    averaged by DDP equals the single-process loss on the concatenated batch.
    Every process must pass the same B.
    """
    if not is_distributed():
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0 (ids, labels, predictions)."""
    if not is_distributed():
        return x
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


def all_reduce_mean(value: float) -> float:
    """Mean of a Python scalar over processes (for logging)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def barrier() -> None:
    if is_distributed():
        dist.barrier()
