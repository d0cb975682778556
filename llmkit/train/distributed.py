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


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def wrap(model: torch.nn.Module, device: torch.device, fsdp: bool = False) -> torch.nn.Module:
    """DDP (replicate, average gradients) or FSDP2 (shard each block's parameters across ranks)."""
    if not is_distributed():
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:  # one all-gather per block keeps peak memory at ~one block
            fully_shard(block)
        fully_shard(model)  # the rest: embeddings, final norm, head (tied weights stay in one group)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def full_state(model: torch.nn.Module, opt: torch.optim.Optimizer, fsdp: bool) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts (a collective under FSDP: every rank must call it)."""
    if not (fsdp and is_distributed()):
        return model.state_dict(), opt.state_dict()
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, opt, options=opts)


def load_optimizer(model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict, fsdp: bool) -> None:
    if not (fsdp and is_distributed()):
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))


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
