"""The gradient plan: which route computes the gradients of a scoring, and the network prepared for it.

The engine computes the same numbers on a plain reference path and on faster routes
(:mod:`initscore.fastpath` lists them). Which route runs is decided here and only here, by
:func:`decide`, from the model, the score mode, the BatchNorm mode, the loss, the device, the order of
differentiation the caller needs and the global switch :func:`initscore.fastpath.enabled`. :func:`prepare`
then builds the private network for that plan -- the scoring copy with its BatchNorm replaced
(:func:`initscore.bn.scoring_copy`), the kernels of its StatBN layers chosen, its convolutions swapped for
:class:`initscore.fast_conv.FastConv2d`, the one-pass segment network of batch mode -- and returns it with
the plan it could carry out (a route the network does not support falls back to the reference one).
Scores (:func:`initscore.scores.gradcosine`), NIO and its baselines (:mod:`initscore.nio`) and the
per-sample proxies use the :class:`Prepared` network and read the plan; they do not choose routes.

Adding a fast path: give :class:`Plan` a field, set it in :func:`decide` (off when ``fastpath.enabled()``
is False), apply it in :func:`prepare` (or read it where the route runs), and add the case to
tests/engine/test_fastpath.py, which checks fast == plain. Adding a layer to the per-sample hook route:
register its grad sampler (:mod:`initscore.grad_samplers`); no change here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from initscore import bn as bnmod
from initscore import fast_conv, fastpath
from initscore.segments import SegmentedNet, segmented_copy

SampleRoute = Literal["vmap", "hooks", "coupled", "none"]


@dataclass(frozen=True)
class Plan:
    """How one scoring computes its gradients.

    bn_mode: the statistics of the copy's StatBN layers ("batch" for ``bn="shared"``).
    primitive_bn: StatBN by primitive ops (``torch.var_mean``): needed under vmap (sample mode: torch's BN
        kernel gives wrong second-order gradients there) and beyond second order (MetaInit).
    per_sample: sample mode's per-sample gradients: "hooks" (one batched backward with layer hooks,
        :mod:`initscore.hook_grads`), "vmap" (``vmap(grad)``), "coupled" (BN batch statistics couple the
        samples: one vector-Jacobian product per sample); "none" in batch mode.
    segments: batch mode takes every sub-batch segment from one forward/backward (:mod:`initscore.segments`).
    fast_conv: Conv2d with the hand-written double backward (second-order callers).
    bn_first_order: batch-statistics StatBN through torch's own BN autograd (first-order callers only).
    instance_kernel: per-sample StatBN through torch's instance-norm kernel (the hook route's forward).
    channels_last: CPU image batches in channels-last layout for the non-vmapped forwards
        (:meth:`subbatch_layout`, BN calibration).
    shared: ``bn="shared"``: every sub-batch's gradient through the statistics of the whole batch.
    """

    bn_mode: str
    primitive_bn: bool
    per_sample: SampleRoute
    segments: bool
    fast_conv: bool
    bn_first_order: bool
    instance_kernel: bool
    channels_last: bool
    shared: bool = False

    def subbatch_layout(self, create_graph: bool) -> bool:
        """Whether the sub-batch forwards of batch mode run in channels-last: not with ``bn="shared"`` (its
        whole-batch BN backward in channels-last moved GC of ResNet-20 by 1.4e-3 relative in float32) and not
        on the one-pass segment route when differentiating twice (it slows that route)."""
        return self.channels_last and not self.shared and not (self.segments and create_graph)


def _device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def decide(model: nn.Module, *, mode: str, bn_mode: str, default_loss: bool, order: int = 1,
           device: torch.device | str | None = None, fast: bool | None = None) -> Plan:
    """The plan for scoring ``model`` (the caller's model, or a scoring copy made by :func:`initscore.bn.scoring_copy`).

    Args:
        mode: "sample" (per-sample gradients) or "batch" (sub-batch gradients).
        bn_mode: the resolved BatchNorm mode ("batch", "calibrated", "per_sample" or "shared").
        default_loss: True for the default cross-entropy (the hook and segment routes need a sum over samples).
        order: how often the caller differentiates: 1 (scores), 2 (NIO, GradInit: through the gradients),
            3 (MetaInit: a Hessian-vector product differentiated once more).
        device: where the scoring runs (default: the device of the model's first parameter).
        fast: whether fast routes may be taken (default: :func:`initscore.fastpath.enabled`).
    """
    fast = fastpath.enabled() if fast is None else bool(fast)
    dev = torch.device(device) if device is not None else _device(model)
    bns = [m for m in model.modules() if isinstance(m, (_BatchNorm, bnmod.StatBN))]
    has_bn = bool(bns)
    coupled = has_bn and bn_mode == "batch"
    if mode == "batch":
        route: SampleRoute = "none"
    elif coupled:
        route = "coupled"
    elif (fast and order == 1 and default_loss and bn_mode == "per_sample"
          and any(m.weight is not None and m.weight.requires_grad for m in bns)):
        # with per-sample BN (which vmap runs as primitive ops) the hooks are the faster route;
        # elsewhere vmap is as fast or faster (bench/engine_ab.py)
        route = "hooks"
    else:
        route = "vmap"
    return Plan(
        bn_mode="batch" if bn_mode == "shared" else bn_mode,
        primitive_bn=mode == "sample" or order >= 3,
        per_sample=route,
        # where it saves a pass: calibrated statistics measured in its forward; elsewhere the per-segment
        # route is faster (concatenating the segments' outputs costs more than the extra passes)
        segments=fast and mode == "batch" and has_bn and bn_mode == "calibrated" and default_loss,
        fast_conv=fast and order >= 2,
        bn_first_order=fast and order == 1,
        instance_kernel=route == "hooks",
        channels_last=fast and dev.type == "cpu",
        shared=has_bn and bn_mode == "shared",
    )


@dataclass
class Prepared:
    """The private network of a scoring and the plan it carries out; ``segnet`` is set iff ``plan.segments``."""

    net: nn.Module
    plan: Plan
    segnet: SegmentedNet | None = None


def prepare(model: nn.Module, plan: Plan) -> Prepared:
    """The scoring copy of ``model`` set up for ``plan`` (the caller's model is not modified).

    StatBN layers get their statistics mode and kernels from the plan here, once; nothing flips them later
    (BN calibration, :func:`initscore.bn.calibrate`, measures statistics inside :mod:`initscore.bn`). A route
    the network does not support is replaced by the reference route in the returned plan: the hook route by
    vmap (a layer without a grad sampler, :func:`initscore.hook_grads.unsupported_reason`), the segment route
    by one pass per segment (:func:`initscore.segments.segmented_copy`)."""
    from initscore.hook_grads import unsupported_reason

    net = bnmod.scoring_copy(model, plan.bn_mode, primitive=plan.primitive_bn)
    if plan.per_sample == "hooks":
        params = {n: p for n, p in net.named_parameters() if p.requires_grad}
        if unsupported_reason(net, params) is not None:
            plan = replace(plan, per_sample="vmap", instance_kernel=False)
    configure(net, plan)
    if plan.fast_conv:
        fast_conv.install(net)
    segnet = segmented_copy(net) if plan.segments else None
    if plan.segments and segnet is None:
        plan = replace(plan, segments=False)
    return Prepared(net=net, plan=plan, segnet=segnet)


def wrap(net: nn.Module, plan: Plan) -> Prepared:
    """A scoring copy the caller set up itself (its StatBN kernels and convolution classes are left as they are),
    with the one-pass segment network of ``plan`` where it applies."""
    segnet = segmented_copy(net) if plan.segments else None
    return Prepared(net=net, plan=plan if segnet is not None or not plan.segments else replace(plan, segments=False),
                    segnet=segnet)


def configure(net: nn.Module, plan: Plan) -> None:
    """Set the kernels of the StatBN layers of scoring copy ``net`` for ``plan``."""
    for m in bnmod.stat_layers(net):
        m.first_order = plan.bn_first_order
        m.instance_kernel = plan.instance_kernel and m.mode == "per_sample"


def use_instance_kernel(net: nn.Module) -> None:
    """Per-sample StatBN layers of ``net`` run torch's instance-norm kernel (the hook route's first-order
    forward; under vmap they use primitive ops regardless)."""
    for m in bnmod.stat_layers(net):
        m.instance_kernel = m.mode == "per_sample"


def hooks_preferred(net: nn.Module) -> bool:
    """For a scoring copy made elsewhere (``bn.scoring_copy``): whether :func:`decide` would take the hook route
    for it (first order, default loss, sample mode): fast paths on and a per-sample StatBN with a trainable
    affine weight."""
    return fastpath.enabled() and any(
        m.mode == "per_sample" and m.weight is not None and m.weight.requires_grad for m in bnmod.stat_layers(net))
