"""Helpers shared by the proxy engines (torch)."""
from __future__ import annotations

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


def independent_copy(model: nn.Module) -> nn.Module:
    """A copy that owns clones of every parameter and buffer, as ``copy.deepcopy`` gives, several times faster.

    The module tree comes from :func:`initscore.bn.tree_copy` (each module copied shallowly, once);
    every registered parameter (without its .grad) and buffer is then cloned, a tensor shared by
    several modules cloned once. Tensors held as plain attributes stay shared: the proxies never
    write them.
    """
    from initscore.bn import tree_copy

    net = tree_copy(model)
    clones: dict[int, torch.Tensor] = {}
    for m in net.modules():
        for name, p in m._parameters.items():
            if p is not None:
                if id(p) not in clones:
                    clones[id(p)] = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
                m._parameters[name] = clones[id(p)]
        for name, b in m._buffers.items():
            if b is not None:
                if id(b) not in clones:
                    clones[id(b)] = b.clone()
                m._buffers[name] = clones[id(b)]
    return net


def private_copy(model: nn.Module) -> nn.Module:
    """An independent copy with gradients enabled on every parameter and no .grad (the caller's model is untouched)."""
    net = independent_copy(model)
    for p in net.parameters():
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
