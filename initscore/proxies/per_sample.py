"""GradSign (Zhang & Jia, ICLR 2022): agreement of per-sample gradient signs (torch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from initscore.errors import NonFiniteError
from initscore.proxies.common import chunk_bounds, finite, private_copy, weight_layers

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def gradsign(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, chunks: int = 4) -> float:
    """GradSign = sum over Conv/Linear weights theta of |sum_n sign(dL(x_n, y_n)/dtheta)|.

    As in the reference each sample is its own batch of one (cross-entropy, training-mode
    BatchNorm with that sample's statistics). The per-sample gradients are computed with
    torch.func.vmap in `chunks` pieces; only the running sign sums are kept.
    """
    net = private_copy(model).train()
    for m in net.modules():
        if isinstance(m, _BN):  # batch statistics, no in-place running-stat update (vmap-safe, same outputs)
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
    layers = weight_layers(net)
    wnames = [f"{name}.weight" if name else "weight" for name, _ in layers]
    named = dict(net.named_parameters())
    frozen = {k: v.detach() for k, v in named.items() if k not in set(wnames)}
    buffers = dict(net.named_buffers())
    wdict = {k: named[k].detach() for k in wnames}

    def loss_one(w: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(net, ({**frozen, **w}, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_sample_grad = vmap(grad(loss_one), in_dims=(None, 0, 0))
    sign_sum = {k: torch.zeros_like(v) for k, v in wdict.items()}
    for st, en in chunk_bounds(x.shape[0], chunks):
        g = per_sample_grad(wdict, x[st:en], y[st:en])
        for k, v in g.items():
            if not torch.isfinite(v).all():
                raise NonFiniteError(f"proxy 'gradsign': per-sample gradient of {k} is NaN/inf", tensor=k)
            sign_sum[k].add_(torch.sign(v).sum(0))
        del g
    return finite("gradsign", sum(float(s.abs().double().sum()) for s in sign_sum.values()))
