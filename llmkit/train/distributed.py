"""Multi-process training on PyTorch's own engine (torchrun + DDP); nothing home-made.

    torchrun --nproc_per_node=2 -m llmkit pretrain --config tiny

torchrun sets RANK / LOCAL_RANK / WORLD_SIZE; we join the process group (gloo
on CPU, nccl on GPU), wrap the model in DistributedDataParallel (gradients are
averaged across ranks during backward), and let only rank 0 log and write
checkpoints. Each rank reads its own slice of every global batch.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

from llmkit.core.runtime import dist_info


def setup(device: torch.device) -> tuple[int, int]:
    """Join the process group if launched by torchrun; returns (rank, world_size)."""
    rank, local_rank, world = dist_info()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return rank, world


def local_device(device: torch.device) -> torch.device:
    _, local_rank, world = dist_info()
    if device.type == "cuda" and world > 1:
        return torch.device("cuda", local_rank)
    return device


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not (dist.is_available() and dist.is_initialized()):
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def no_sync(model: torch.nn.Module, skip: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def mean_across_ranks(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
