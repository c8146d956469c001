"""Per-layer per-sample gradient rules, registered by layer type (the Opacus pattern).

When the samples of a batch do not interact, row n of d = dL/dy (L = sum_n loss_n, y a layer's
output) is the gradient of sample n's own loss with respect to that output, so each trainable
tensor's per-sample gradient is a per-row product of the layer's input a and d (Goodfellow 2015;
Yousefpour et al. 2021, "Opacus"). A *grad sampler* states that product for one layer type:

  Linear   y = a W^T + b:    g_n(W) = sum_t d_nt a_nt^T,  g_n(b) = sum_t d_nt
  Conv2d   y = W * a + b:    g_n(W) = the weight gradient of sample n's convolution, g_n(b) = sum_hw d_n
  StatBN   y = xhat w + b:   g_n(w) = sum_hw d_n xhat_n,  g_n(b) = sum_hw d_n

Model families register their own layers next to their definition (``register_grad_sampler``
for layers that hold tensors, ``register_samplewise`` for parameter-free leaves that act on each
sample alone), so the engine never imports the model zoo. Lookup walks the layer's MRO, so a
subclass inherits its base's rule unless it registers its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from initscore.bn import StatBN

# (module, names of its own trainable tensors, input a, output o, output gradient d) -> {attr: (B, *shape)}
SampleFn = Callable[[nn.Module, frozenset[str], Tensor, Tensor, Tensor], dict[str, Tensor]]
# (module, names of its own trainable tensors) -> None when the rule applies, else why not
CheckFn = Callable[[nn.Module, frozenset[str]], "str | None"]


@dataclass(frozen=True)
class GradSampler:
    """A registered rule: ``fn`` computes the per-sample gradients, ``check`` says when it cannot."""

    fn: SampleFn
    check: CheckFn | None = None


_SAMPLERS: dict[type, GradSampler] = {}
_SAMPLEWISE: set[type] = {
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.Dropout, nn.Dropout2d, nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
}  # leaf modules without parameters that act on each sample alone (scoring copies run in eval mode)


def register_grad_sampler(*layer_types: type, check: CheckFn | None = None) -> Callable[[SampleFn], SampleFn]:
    """Decorator: ``fn`` is the per-sample gradient rule of ``layer_types`` (and their subclasses)."""

    def deco(fn: SampleFn) -> SampleFn:
        for t in layer_types:
            _SAMPLERS[t] = GradSampler(fn, check)
        return fn

    return deco


def register_samplewise(*layer_types: type) -> None:
    """Declare parameter-free leaf module types whose forward acts on each sample alone."""
    _SAMPLEWISE.update(layer_types)


def sampler_for(mod: nn.Module) -> GradSampler | None:
    """The rule registered for ``type(mod)`` or its nearest registered base class, else None."""
    for cls in type(mod).__mro__:
        if cls in _SAMPLERS:
            return _SAMPLERS[cls]
    return None


def is_samplewise(mod: nn.Module) -> bool:
    """True when ``mod``'s type (or a base) was declared sample-wise."""
    return any(cls in _SAMPLEWISE for cls in type(mod).__mro__)


def _weight_bias_check(kind: str) -> CheckFn:
    def check(mod: nn.Module, owned: frozenset[str]) -> str | None:
        if owned != {"weight"} | ({"bias"} if getattr(mod, "bias", None) is not None else set()):
            return f"a frozen {kind} tensor"
        return None

    return check


def _conv_check(mod: nn.Module, owned: frozenset[str]) -> str | None:
    if isinstance(mod.padding, str) or mod.padding_mode != "zeros":
        return f"padding {mod.padding!r}/{mod.padding_mode!r}"
    return _weight_bias_check("Conv2d")(mod, owned)


@register_grad_sampler(nn.Conv2d, check=_conv_check)
def _conv2d(mod: nn.Module, owned: frozenset[str], a: Tensor, o: Tensor, d: Tensor) -> dict[str, Tensor]:
    B, w = a.shape[0], mod.weight
    if mod.kernel_size == (1, 1) and mod.stride == (1, 1) and mod.padding == (0, 0) and mod.groups == 1:
        gw = torch.bmm(d.reshape(B, d.shape[1], -1), a.reshape(B, a.shape[1], -1).transpose(1, 2))
    else:
        # the samples as groups of ONE convolution's weight gradient (one kernel call; unfold + bmm would
        # write k*k copies of the input)
        gw = torch.ops.aten.convolution_backward(
            d.reshape(1, -1, *d.shape[2:]), a.reshape(1, -1, *a.shape[2:]),
            torch.empty((B * w.shape[0], *w.shape[1:]), dtype=w.dtype, device=w.device), None,
            list(mod.stride), list(mod.padding), list(mod.dilation), False, [0, 0], B * mod.groups,
            [False, True, False])[1]
    out = {"weight": gw.reshape(B, *w.shape)}
    if "bias" in owned:
        out["bias"] = d.sum(dim=(2, 3))
    return out


@register_grad_sampler(nn.Linear, check=_weight_bias_check("Linear"))
def _linear(mod: nn.Module, owned: frozenset[str], a: Tensor, o: Tensor, d: Tensor) -> dict[str, Tensor]:
    B = a.shape[0]
    a3 = a.reshape(B, -1, a.shape[-1])
    d3 = d.reshape(B, -1, d.shape[-1])
    out = {"weight": torch.bmm(d3.transpose(1, 2), a3)}
    if "bias" in owned:
        out["bias"] = d3.sum(1)
    return out


def _statbn_check(mod: nn.Module, owned: frozenset[str]) -> str | None:
    if any(True for _ in mod.children()):
        return "a BatchNorm that applies its own activation (timm's norm-act layers)"
    if mod.mode not in ("per_sample", "calibrated"):
        return "BatchNorm with batch statistics couples the samples"
    if mod.weight is not None and owned != {"weight", "bias"}:
        return "a frozen BatchNorm affine tensor"
    return None


@register_grad_sampler(StatBN, check=_statbn_check)
def _statbn(mod: nn.Module, owned: frozenset[str], a: Tensor, o: Tensor, d: Tensor) -> dict[str, Tensor]:
    dims = list(range(2, a.dim()))
    shape = [1, a.shape[1]] + [1] * (a.dim() - 2)
    if bool((mod.weight != 0).all()):  # xhat from the output: no second pass for the statistics
        xhat = (o - mod.bias.view(shape)) / mod.weight.view(shape)
    elif mod.mode == "per_sample":
        var, mean = torch.var_mean(a, dim=dims, correction=0, keepdim=True)
        xhat = (a - mean) * torch.rsqrt(var + mod.eps)
    else:
        xhat = (a - mod.calib_mean.view(shape)) * torch.rsqrt(mod.calib_var.view(shape) + mod.eps)
    return {"weight": (d * xhat).sum(dim=dims) if dims else d * xhat,
            "bias": d.sum(dim=dims) if dims else d}
