"""identity_gain: the mean diagonal of each block's input-output Jacobian at initialization (a residual-path detector).

    identity_gain = min over blocks b of tr(J_b) / n_b,       J_b = d y_b / d x_b,  n_b = x_b.numel()
    tr(J_b) ~ v^T J_b v = <v, (y_b(x_b + e v) - y_b(x_b - e v)) / (2 e)>      (Hutchinson, one probe)

v is a Rademacher (+-1) tensor of x_b's shape from a generator seeded with 0, e = EPS * rms(x_b); the difference
is taken in float64 arithmetic on the float32 outputs. x_b and y_b are block b's input and output on the first
SAMPLES (4) samples of the batch, in no-grad forwards of an independent copy in training mode (BatchNorm
normalizes with those samples, and J_b includes that coupling). The blocks are the units of the network: the
modules that have children and are not containers (Sequential, ModuleList, ModuleDict), with no such unit above
them -- the cells and reduction blocks of a NAS-Bench-201 network, the residual blocks of a ResNet -- of which
those called with one tensor that return a tensor of its shape count (seen in the same forward). A model with no
such block has no identity path and scores 0.

What it sees: an identity edge from a block's input to its output adds exactly 1 to tr(J)/n (each further
all-identity path adds 1 more); an average-pooling edge adds its kernel's centre weight (1/9 for 3x3); a branch of
random convolutions adds about 0 (random signs). Residual paths make deep networks trainable (He et al., CVPR
2016; Veit et al., NeurIPS 2016) and the capacity proxies (synflow, meco, swap, params) cannot see them: a skip
edge replaces a convolution, so those score it LOWER. Alone identity_gain ranks NAS-Bench-201 negatively (a cell of
skips only has the most identity and no capacity); it is meant as a member of ``ensemble``, where capacity is
required too. Higher = more direct input-to-output path (predicted better at equal capacity).

Source: this project; not from a paper. Its effect is measured in docs/results/nas.md.
"""
from __future__ import annotations

import torch
from torch import nn

from initscore.proxies.common import finite, independent_copy

SAMPLES = 4
EPS = 1e-3
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def units(net: nn.Module) -> dict[str, nn.Module]:
    """The outermost non-container modules that have children (the network itself excluded)."""
    out: dict[str, nn.Module] = {}
    stack: list[tuple[str, nn.Module]] = [("", net)]  # iterative: a recursive closure would make the copy cyclic
    while stack:
        prefix, m = stack.pop()
        for name, child in m.named_children():
            full = f"{prefix}{name}"
            if not any(True for _ in child.children()):
                continue
            if isinstance(child, _CONTAINERS):
                stack.append((full + ".", child))
            else:
                out[full] = child
    return out


def _unit_calls(net: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(name, unit, input) of every call of a unit with one tensor and no keyword arguments that returned a tensor
    of its input's shape, in call order: one no-grad forward of ``x`` in the network's current mode."""
    calls: list[tuple[str, nn.Module, torch.Tensor]] = []

    def hook(name: str):
        def fn(m, args, kwargs, out):
            if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor) \
                    and args[0].shape == out.shape:
                calls.append((name, m, args[0].detach()))
        return fn

    handles = [m.register_forward_hook(hook(n), with_kwargs=True) for n, m in units(net).items()]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def blocks(net: nn.Module, x1: torch.Tensor) -> list[str]:
    """Names of the units that count (see :func:`_unit_calls`), found on one eval-mode sample."""
    was_training = net.training
    try:
        net.eval()
        seen = {name for name, _, _ in _unit_calls(net, x1)}
    finally:
        net.train(was_training)
    return [n for n in units(net) if n in seen]


def identity_gain(model: nn.Module, x: torch.Tensor) -> float:
    net = independent_copy(model).train()
    calls = _unit_calls(net, x[:SAMPLES])
    if not calls:
        return 0.0
    gen = torch.Generator(device=x.device).manual_seed(0)
    gains: list[float] = []
    with torch.no_grad():
        for _, m, xb in calls:
            v = torch.randint(0, 2, xb.shape, generator=gen, device=xb.device).to(xb.dtype) * 2 - 1
            e = EPS * float(xb.double().pow(2).mean().sqrt()) or EPS
            diff = m(xb + e * v).double() - m(xb - e * v).double()
            gains.append(float((v.double() * diff).sum()) / (2 * e * xb.numel()))
    return finite("identity_gain", min(gains))


def identity_gain_group(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1) -> dict[str, float]:
    return {"identity_gain": identity_gain(model, x)}
