"""Helpers shared by the proxy engines (torch)."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from initscore.errors import NonFiniteError, OptionsError

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv/Linear layer: the tensors the zero-cost-nas measures sum over."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]
    if not layers:
        raise OptionsError("this proxy needs at least one Conv or Linear layer in the model")
    return layers


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy with gradients enabled on every parameter and no stale .grad (the caller's model is untouched)."""
    net = copy.deepcopy(model)
    for p in net.parameters():
        p.grad = None
        p.requires_grad_(True)
    return net


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def chunk_bounds(n: int, chunks: int) -> list[tuple[int, int]]:
    """[start, end) of `chunks` nearly equal consecutive pieces of n samples (the reference's split_data)."""
    chunks = max(1, min(chunks, n))
    return [(i * n // chunks, (i + 1) * n // chunks) for i in range(chunks)]


def finite(name: str, value: float) -> float:
    """Return `value` as a float or raise NonFiniteError naming the proxy."""
    value = float(value)
    if not math.isfinite(value):
        raise NonFiniteError(f"proxy {name!r} is {value} for this architecture and batch (not replaced)", tensor=None)
    return value


def is_oom(exc: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
