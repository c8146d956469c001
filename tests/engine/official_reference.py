"""A restatement, written for these tests, of what the NIO authors' released code computes.

Source read (not copied; it carries no licence): HarborYuan/GradCosine, ``gradcos/gradcos_initializer.py``
(``batch_settings``, ``cal_cos_similarity``, ``cal_grad_variance``, ``GradCosInitializer.train/run``,
``set_bn_modes``, ``get_ordered_params``) and ``gradcos/gradinit_optimizers.py`` (``RescaleAdam``).
What it does, in plain terms, as restated here on an ordinary ``nn.Module`` (no initscore code is used):

* BatchNorm layers normalize with the statistics of the whole batch and update no running statistics;
  the batch goes through the network ONCE; the per-sample cross-entropy losses are kept.
* Sub-batch i of D (L = int(B / D)) is [int((1 - r) L i), int((1 + r) L (i + 1))), the first from 0, the
  last to B; its gradient is that of the mean loss of its samples, w.r.t. the weights and biases of the
  Conv2d / Linear / LayerNorm modules only, flattened and concatenated.
* GC = mean of the D(D-1) off-diagonal cosines; GN = mean of the D norms; GV = sum over entries of the
  variance (biased) over the D gradients.
* One step: if GN > gamma, minimize GN; else minimize the target. Every parameter whose name contains
  "weight" or "bias" and whose norm is non-zero has a scale alpha (starting at 1); d obj / d alpha =
  <dobj/dp, p> / alpha; clipped to +-clip; Adam moments per scale with a first moment for each branch and a
  shared second moment; alpha <- max(alpha - lr/(1-b1^k_branch) m / (sqrt(v/(1-b2^k)) + eps), floor),
  floor = min_scale for "weight" names, 0 for "bias" names; the parameter becomes alpha * (initial tensor).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

F = nn.functional


def _prepare(model: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
    net = copy.deepcopy(model)
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.training = True
            m.track_running_stats = False
    wrt = []
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.LayerNorm)):
            wrt.append(m.weight)
            if m.bias is not None:
                wrt.append(m.bias)
    return net, wrt


def slices(B: int, D: int, r: float) -> list[tuple[int, int]]:
    L = int(B / D)
    out = []
    for i in range(D):
        lo = 0 if i == 0 else int((1 - r) * L * i)
        hi = B if i == D - 1 else int((1 + r) * L * (i + 1))
        out.append((lo, min(hi, B)))
    return out


def _terms(net: nn.Module, wrt: list[nn.Parameter], x: torch.Tensor, y: torch.Tensor, D: int, r: float,
           create_graph: bool):
    losses = F.cross_entropy(net(x), y, reduction="none")
    rows = []
    for lo, hi in slices(x.shape[0], D, r):
        g = torch.autograd.grad(losses[lo:hi].mean(), wrt, retain_graph=True, create_graph=create_graph)
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    G = torch.stack(rows)
    norms = G.square().sum(1).sqrt()
    cos = (G @ G.T) / (norms[:, None] * norms[None, :])
    gc = (cos.sum() - cos.diagonal().sum()) / (D * D - D)
    gv = G.var(0, unbiased=False).sum()
    return gc, norms, gv


def official_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, D: int, r: float) -> dict[str, float]:
    net, wrt = _prepare(model)
    gc, norms, gv = _terms(net, wrt, x, y, D, r, create_graph=False)
    return {"gc": float(gc), "gn": float(norms.mean()), "g_max": float(norms.max()), "gv": float(gv)}


def official_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, D: int, r: float, gamma: float,
                   target: str, steps: int, lr: float, min_scale: float = 0.01, clip: float = 1.0,
                   gn_mul: float = 1.0, betas=(0.9, 0.999), eps: float = 1e-8):
    """``steps`` steps on the same batch; returns (state_dict, [branch of each step: True = constraint])."""
    net, wrt = _prepare(model)
    named = [(n, p) for n, p in net.named_parameters() if ("weight" in n or "bias" in n)]
    init = {n: p.detach().clone() for n, p in named}
    st = {n: dict(alpha=1.0, m={True: 0.0, False: 0.0}, k={True: 0, False: 0}, v=0.0) for n, _ in named}
    branches = []
    for _ in range(steps):
        gc, norms, gv = _terms(net, wrt, x, y, D, r, create_graph=True)
        gn = norms.mean()
        cons = bool(gn.item() > gamma)
        branches.append(cons)
        if cons:
            obj = gn
        else:
            head = -gc if target.startswith("gc") else gv
            if target.endswith("_gn"):
                obj = head - gn_mul * norms.square().sum()
            elif target.endswith("_gn_sqrt"):
                obj = head - gn_mul * norms.sum()
            else:
                obj = head
        grads = torch.autograd.grad(obj, [p for _, p in named], allow_unused=True)
        with torch.no_grad():
            for (n, p), g in zip(named, grads):
                s = st[n]
                if g is None or float(init[n].norm()) == 0.0:
                    continue
                ga = float((g * p).sum()) / s["alpha"]
                ga = max(min(ga, clip), -clip) if clip > 0 else ga
                s["k"][cons] += 1
                s["m"][cons] = betas[0] * s["m"][cons] + (1 - betas[0]) * ga
                s["v"] = betas[1] * s["v"] + (1 - betas[1]) * ga * ga
                k_all = s["k"][True] + s["k"][False]
                denom = math.sqrt(s["v"] / (1 - betas[1] ** k_all)) + eps
                floor = min_scale if "weight" in n else 0.0
                s["alpha"] = max(s["alpha"] - lr / (1 - betas[0] ** s["k"][cons]) * s["m"][cons] / denom, floor)
                p.copy_(s["alpha"] * init[n])
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, branches
