"""2-D convolution with a hand-written double backward, for NIO's second-order graph (torch).

NIO (and GradInit/MetaInit) differentiate the parameter gradients once more. torch's own
convolution double backward computes the term for the weight as a convolution of the
batch-transposed tensors (input (C_in, N, H, W) against a "kernel" (C_out, N, H_out, W_out)
of the whole image's size), which oneDNN runs slowly on the CPU, plus layout copies: in a
batch-mode NIO step of ResNet-20 with BN (B=64, D=2, r=0.6) those calls took ~25 % of the step.

With y = conv(x, W) + b and its backward (gx, gW, gb) = (conv^T(gy, W), wgrad(x, gy),
sum gy), all three linear in gy, the vector-Jacobian product for cotangents (Gx, GW, Gb) is

    d/dgy = conv(Gx, W) + conv(x, GW) + Gb          (broadcast over N, H, W)
    d/dx  = conv^T(gy, GW)                           (= the input gradient of conv(., GW) at gy)
    d/dW  = wgrad(Gx, gy)                            (= the weight gradient of conv(Gx, .) at gy)

each one ordinary forward, input-gradient or weight-gradient kernel. When a third order is
asked for (``create_graph`` in that backward: MetaInit), the same formula runs on differentiable
ops. Checked against torch's double backward and by gradgradcheck in float64
(tests/engine/test_fast_conv.py). Under torch.func transforms (vmap) torch's own convolution is used.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv_backward(gy: Tensor, x: Tensor, w: Tensor, has_bias: bool, stride, padding, dilation, groups: int,
                   mask: tuple[bool, bool, bool]) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    return torch.ops.aten.convolution_backward(
        gy, x, w, [w.shape[0]] if has_bias else None, list(stride), list(padding), list(dilation), False,
        [0, 0], groups, list(mask))


class _ConvBackward(torch.autograd.Function):
    """(gy, x, W) -> (gx, gW, gb) of y = conv(x, W) + b, with the double backward of the module docstring."""

    @staticmethod
    def forward(ctx, gy, x, w, need_x, has_bias, stride, padding, dilation, groups):  # type: ignore[override]
        ctx.save_for_backward(gy, x, w)
        ctx.conf = (has_bias, stride, padding, dilation, groups)
        gx, gw, gb = _conv_backward(gy, x, w, has_bias, stride, padding, dilation, groups, (need_x, True, has_bias))
        return gx, gw, gb

    @staticmethod
    def backward(ctx, Gx, Gw, Gb):  # type: ignore[override]
        gy, x, w = ctx.saved_tensors
        has_bias, stride, padding, dilation, groups = ctx.conf
        d_gy = d_x = d_w = None
        if ctx.needs_input_grad[0]:
            terms = []
            if Gx is not None:
                terms.append(F.conv2d(Gx, w, None, stride, padding, dilation, groups))
            if Gw is not None:
                terms.append(F.conv2d(x, Gw, None, stride, padding, dilation, groups))
            if has_bias and Gb is not None:
                terms.append(Gb.view(1, -1, 1, 1).expand_as(gy))
            d_gy = None
            # accumulated in place into the first term, a fresh convolution output (the broadcast bias term is
            # always last), unless a third order is being recorded
            for t in terms:
                d_gy = t if d_gy is None else (d_gy.add_(t) if not torch.is_grad_enabled() else d_gy + t)
        if ctx.needs_input_grad[1] and Gw is not None:
            d_x = _conv_backward(gy, x, Gw, False, stride, padding, dilation, groups, (True, False, False))[0]
        if ctx.needs_input_grad[2] and Gx is not None:
            d_w = _conv_backward(gy, Gx, w, False, stride, padding, dilation, groups, (False, True, False))[1]
        return d_gy, d_x, d_w, None, None, None, None, None, None


class _Conv(torch.autograd.Function):
    """y = conv2d(x, W) + b (torch's kernel); its backward is a :class:`_ConvBackward`."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):  # type: ignore[override]
        ctx.save_for_backward(x, w)
        ctx.conf = (b is not None, stride, padding, dilation, groups)
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        x, w = ctx.saved_tensors
        has_bias, stride, padding, dilation, groups = ctx.conf
        gx, gw, gb = _ConvBackward.apply(gy, x, w, ctx.needs_input_grad[0], has_bias, stride, padding, dilation,
                                         groups)
        return gx, gw, (gb if has_bias else None), None, None, None, None


def conv2d(x: Tensor, w: Tensor, b: Tensor | None, stride, padding, dilation, groups: int) -> Tensor:
    """F.conv2d with the fast double backward (integer padding, 4-D input)."""
    return _Conv.apply(x, w, b, tuple(stride), tuple(padding), tuple(dilation), int(groups))


class FastConv2d(nn.Conv2d):
    """nn.Conv2d whose convolution is :func:`conv2d` (the class a scoring copy's Conv2d gets, see :func:`install`).

    Same parameters, names and forward values; ``padding="same"``-style string padding, non-zero padding modes,
    unbatched inputs and torch.func transforms use nn.Conv2d's own path."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        if (self.padding_mode != "zeros" or isinstance(self.padding, str) or input.dim() != 4
                or torch._C._are_functorch_transforms_active()):
            return super()._conv_forward(input, weight, bias)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def install(net: nn.Module) -> nn.Module:
    """Give every exact nn.Conv2d of ``net`` (a private copy: its modules are not the caller's) the class
    :class:`FastConv2d`, in place; returns ``net``. :func:`initscore.grad_plan.prepare` calls it where the plan
    asks for it (second-order callers, fast paths on)."""
    for m in net.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = FastConv2d
    return net
