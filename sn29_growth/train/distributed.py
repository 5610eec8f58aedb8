"""Everything multi-process, kept out of the model and the loop: process group, FSDP2, full state dicts.

A run is distributed when ``WORLD_SIZE`` > 1 (as ``torchrun`` sets it) or when FSDP2 is asked for in one
process (``TrainConfig.fsdp``, the same code path as N processes): the process group is initialised
with NCCL on CUDA and gloo on the CPU (one process outside torchrun gets an in-memory store), each decoder layer and then the whole model are wrapped with
FSDP2 ``fully_shard`` (parameters, gradients and optimizer state sharded along dim 0), and checkpoints are
gathered into full state dicts on rank 0. In a single process every function here is a plain no-op or
its obvious local equivalent, so the loop has one code path.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    owns_group: bool = False  # this code initialised the process group and tears it down

    @property
    def distributed(self) -> bool:
        """A process group is up (FSDP2, collectives), even one of a single process."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` on a machine without CUDA is an error."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda requested but torch.cuda.is_available() is False")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device_preference: str = "auto", fsdp: bool = False) -> DistContext:
    """Read torchrun's environment; initialise the process group when ``WORLD_SIZE`` > 1 or ``fsdp``.

    ``fsdp`` in one process: under torchrun (``MASTER_ADDR`` set) the usual ``env://`` rendezvous,
    otherwise an in-memory store for a group of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size <= 1 and not fsdp:
        return DistContext(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = backend_for(device)
    owns = not dist.is_initialized()
    if owns:
        device_id = device if device.type == "cuda" else None
        if world_size <= 1 and "MASTER_ADDR" not in os.environ:
            store = dist.HashStore()
            dist.init_process_group(backend=backend, store=store, rank=0, world_size=1, device_id=device_id)
        else:
            dist.init_process_group(backend=backend, device_id=device_id)
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, backend, owns)
    log.info("process group: rank %d of %d (%s on %s)", ctx.rank, ctx.world_size, backend, device)
    return ctx


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard_model(model: torch.nn.Module, ctx: DistContext, cpu_offload: bool = False) -> torch.nn.Module:
    """FSDP2: ``fully_shard`` each decoder layer, then the root (which holds embeddings, norm, head).

    Single process without a process group: the model is only moved to the device. Parameters on the
    CPU are moved to the mesh's device by ``fully_shard``. ``cpu_offload``: the sharded parameters,
    their gradients (and so the optimizer state and step) stay in CPU memory; each layer's parameters
    are copied to the device for its forward and backward (FSDP2 ``CPUOffloadPolicy``).
    """
    if not ctx.distributed:
        if cpu_offload:
            raise ValueError("cpu_offload: needs FSDP2 (torchrun with several processes, or --fsdp)")
        return model.to(ctx.device)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,), mesh_dim_names=("fsdp",))
    offload = CPUOffloadPolicy(pin_memory=ctx.device.type == "cuda") if cpu_offload else OffloadPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, offload_policy=offload)
    fully_shard(model, mesh=mesh, offload_policy=offload)
    return model


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: no model.layers to shard")
    return list(layers)


def local_shard(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """The part of ``full`` (same global shape as ``param``) that this rank holds of ``param``."""
    if isinstance(param, DTensor):
        placed = distribute_tensor(
            full.to(param.device), param.device_mesh, param.placements, src_data_rank=None
        )
        return placed.to_local()
    return full.to(param.device)


def set_gradient_sync(model: torch.nn.Module, enabled: bool) -> None:
    """Turn FSDP's gradient reduce-scatter on or off (off for all but the last accumulation micro-batch)."""
    setter = getattr(model, "set_requires_gradient_sync", None)
    if setter is not None:
        setter(enabled)


def all_reduce_sum(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def _options(ctx: DistContext) -> StateDictOptions:
    return StateDictOptions(full_state_dict=True, cpu_offload=ctx.distributed)


def full_model_state(model: torch.nn.Module, ctx: DistContext) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU tensors of every parameter and persistent buffer; empty on ranks ≠ 0.

    Tied aliases (e.g. ``lm_head.weight`` of a tied model) are left out, as ``save_pretrained`` does.
    A collective: every rank must call it.
    """
    state = get_model_state_dict(model, options=_options(ctx))
    if not ctx.is_main:
        return {}
    aliases = {name for name, _ in model.named_parameters(remove_duplicate=False)} - {
        name for name, _ in model.named_parameters()
    }
    return {k: v.detach().to("cpu") for k, v in state.items() if k not in aliases}


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext) -> dict:
    """The optimizer state keyed by parameter name, unsharded, on the CPU; empty on ranks ≠ 0. Collective."""
    state = get_optimizer_state_dict(model, optimizer, options=_options(ctx))
    if not ctx.is_main:
        return {}
    return _to_cpu(state)


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a full, name-keyed optimizer state (every rank passes the same one; each keeps its shard)."""
    set_optimizer_state_dict(
        model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
    )


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        if isinstance(obj, DTensor):
            obj = obj.full_tensor()
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
