"""RescaleAdam: the scale optimizer of the NIO and GradInit reference implementations.

NIO's released code (``gradcos/gradinit_optimizers.py`` in the authors' GradCosine
repository, which builds on GradInit's ``RescaleAdam``, Zhu et al. 2021) does NOT run
plain Adam on the per-tensor scales. For every scale s_l, with gradient g_l = d obj / d s_l
of the objective being minimized at this step::

    g      = clip(g_l, -grad_clip, grad_clip)            (grad_clip 0 = no clipping)
    branch = "constraint" if the step lowers GN (g_max > gamma) else "ascent"
    m_b    = beta1 m_b + (1 - beta1) g                   one first moment PER BRANCH
    v      = beta2 v   + (1 - beta2) g^2                 one second moment, shared
    k_b    = number of steps taken in branch b so far;  k = k_constraint + k_ascent
    s_l    = max(s_l - lr / (1 - beta1^k_b) * m_b / (sqrt(v / (1 - beta2^k)) + eps), min_scale)

(the reference clamps inside the step with ``min_scale``; :func:`initscore.nio.rectify`
clamps after it, the same thing). Two things this changes against one shared Adam:

* the constraint step's gradient (d GN / d s, ~2,600x the GC gradient on the no-BN
  ResNet-20) is clipped to +-1 before it reaches the moments, and
* it lives in its own first moment, so after a constraint step the next ascent step is
  not pushed down by it (the collapse of GC-only ascent under one shared Adam,
  research/nio_investigation.md, investigation item 3). The shared second moment makes the ascent steps
  after a large constraint gradient smaller.

When every scale's gradient is larger than ``grad_clip`` in both branches (d GN / d s is in the
hundreds on the no-BN ResNet-20), every step moves every scale by about +-lr and the iterates
oscillate across the bound (research/nio_investigation.md, "Follow-up 3").
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

BETAS = (0.9, 0.999)
EPS = 1e-8


class RescaleAdam:
    """Scalar-per-tensor RescaleAdam over ``leaves`` (0-dim tensors with ``.grad`` set by the caller).

    ``step(constrained)`` applies one update; the clamp at ``min_scale`` is the caller's.
    """

    def __init__(self, leaves: list[Tensor], *, lr: float, grad_clip: float = 1.0,
                 betas: tuple[float, float] = BETAS, eps: float = EPS) -> None:
        self.leaves = list(leaves)
        self.lr = float(lr)
        self.grad_clip = float(grad_clip)
        self.beta1, self.beta2 = betas
        self.eps = float(eps)
        n = len(self.leaves)
        self.m = {True: [0.0] * n, False: [0.0] * n}  # first moment per branch (True = constraint)
        self.v = [0.0] * n
        self.steps = {True: 0, False: 0}

    @torch.no_grad()
    def step(self, constrained: bool) -> None:
        b = bool(constrained)
        self.steps[b] += 1
        k_b, k = self.steps[b], self.steps[True] + self.steps[False]
        bc1 = 1.0 - self.beta1 ** k_b
        bc2 = 1.0 - self.beta2 ** k
        m = self.m[b]
        for i, s in enumerate(self.leaves):
            g = 0.0 if s.grad is None else float(s.grad)
            if self.grad_clip > 0:
                g = max(min(g, self.grad_clip), -self.grad_clip)
            m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g * g
            denom = math.sqrt(self.v[i] / bc2) + self.eps
            s.sub_(self.lr / bc1 * m[i] / denom)
