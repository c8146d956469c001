"""Proxies that do not need the labels: synflow, zen, params, flops (torch)."""
from __future__ import annotations

import math

import torch
from torch import nn

from initscore.errors import NonFiniteError
from initscore.proxies.common import WEIGHT_LAYERS, finite, independent_copy, weight_layers

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _remove_batchnorm(net: nn.Module) -> None:
    """Replace every BatchNorm module by an identity (zero-cost-nas builds the synflow copy with bn=False).

    A BN module with the attribute ``keep_in_synflow = True`` stays (the zero-cost-nas NB201
    model keeps the BNs of its reduction blocks in the bn=False copy; nb201 variant zero_cost_nas).
    """
    for name, child in list(net.named_children()):
        if isinstance(child, _BN):
            if not getattr(child, "keep_in_synflow", False):
                setattr(net, name, nn.Identity())
        else:
            _remove_batchnorm(child)


def synflow(model: nn.Module, x: torch.Tensor) -> float:
    """SynFlow (Tanaka et al., NeurIPS 2020) as in zero-cost-nas: sum over Conv/Linear W of |W * dR/dW|.

    The copy has BatchNorm removed, every parameter replaced by its absolute value and
    float64 precision; R = sum of the outputs for one all-ones input of the batch's shape.
    BatchNorms marked ``keep_in_synflow`` stay, in training mode (batch statistics of the
    single all-ones input), as in the reference's train-mode copy.
    """
    net = independent_copy(model)
    _remove_batchnorm(net)
    net = net.double().eval()  # eval only silences dropout; kept BNs run in training mode below
    for m in net.modules():
        if isinstance(m, _BN):
            m.train()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
            p.grad = None
            p.requires_grad_(True)
    layers = weight_layers(net)
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    out = net(ones)
    if not torch.isfinite(out).all():
        raise NonFiniteError("proxy 'synflow': the |W| network overflows float64 on the all-ones input")
    out.sum().backward()
    with torch.no_grad():
        total = sum(float((m.weight * m.weight.grad).abs().sum()) for _, m in layers if m.weight.grad is not None)
    return finite("synflow", total)


def _features_before_pool(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Feature map the network feeds its global average pool (or the output when it has none)."""
    if hasattr(net, "forward_features"):
        return net.forward_features(x)
    seen: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
        for m in net.modules()
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d))
    ]
    try:
        out = net(x)
    finally:
        for h in hooks:
            h.remove()
    return seen[-1] if seen else out


def zen(model: nn.Module, x: torch.Tensor, *, seed: int = 0, mixup_gamma: float = 1e-2) -> float:
    """Zen-score (Lin et al., ICCV 2021) with BatchNorm.

    On a copy re-initialized as in Zen-NAS (Conv/Linear weights N(0,1), Linear biases 0,
    BN affine 1/0, running statistics reset), in training mode:
      zen = log mean_n sum |f(a) - f(a + gamma * b)| + sum_BN log sqrt(mean running_var)
    with a, b ~ N(0, 1) of the batch's shape (seeded), f the feature map before the
    global pool, gamma = 0.01; the running variances are those left by the two forwards.
    """
    net = independent_copy(model).train()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, WEIGHT_LAYERS):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen, device=x.device, dtype=m.weight.dtype))
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, _BN):
                if m.affine:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                if m.track_running_stats:
                    m.reset_running_stats()
        a = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        b = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        if x.dim() == 4:  # channels-last image layout: the same forwards, 1.3-2.5x faster on CPU (NB201 avg-pools, convs)
            net = net.to(memory_format=torch.channels_last)
            a, b = a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last)
        fa = _features_before_pool(net, a)
        fb = _features_before_pool(net, a + mixup_gamma * b)
        diff = (fa.double() - fb.double()).abs().flatten(1).sum(1).mean()
        if not torch.isfinite(diff) or diff <= 0:
            raise NonFiniteError(f"proxy 'zen': feature difference is {float(diff)} (log undefined)")
        log_bn = 0.0
        for m in net.modules():
            if isinstance(m, _BN) and m.running_var is not None:
                log_bn += 0.5 * math.log(float(m.running_var.double().mean()))
    return finite("zen", math.log(float(diff)) + log_bn)


def params(model: nn.Module) -> float:
    """Number of parameters (all parameter tensors)."""
    return float(sum(p.numel() for p in model.parameters()))


def flops(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates per sample of the Conv and Linear layers, counted from shapes in forward hooks.

    Conv: out_elements * (in_channels / groups) * prod(kernel); Linear: out_elements * in_features
    (bias additions, BatchNorm, pooling and element-wise ops are not counted).
    """
    from initscore.bn import tree_copy

    net = tree_copy(model).eval()  # shares the tensors: an eval-mode no-grad forward writes none of them
    total = [0]

    def hook(mod, inp, out):
        per_sample = out[0].numel()
        if isinstance(mod, nn.Linear):
            total[0] += per_sample * mod.in_features
        else:
            total[0] += per_sample * (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, WEIGHT_LAYERS)]
    try:
        with torch.no_grad():
            net(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return float(total[0])


def synflow_group(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1) -> dict[str, float]:
    return {"synflow": synflow(model, x)}


def zen_group(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1) -> dict[str, float]:
    return {"zen": zen(model, x)}


def params_group(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1) -> dict[str, float]:
    return {"params": params(model)}


def flops_group(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names, *, chunks: int = 1) -> dict[str, float]:
    return {"flops": flops(model, x)}
