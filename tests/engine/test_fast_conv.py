"""initscore.fast_conv: the hand-written convolution double backward against torch's and gradgradcheck (float64)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initscore import fast_conv, models
from initscore.bn import scoring_copy
from initscore.nio import Context, ScaledParams, nio_objective
from initscore.scores import trainable

CONFIGS = [  # (C_in, C_out, kernel, stride, padding, dilation, groups, bias)
    (3, 4, 3, 1, 1, 1, 1, True),
    (4, 6, 3, 2, 1, 1, 2, False),
    (2, 4, 3, 1, 2, 2, 1, True),
    (4, 4, 1, 1, 0, 1, 4, True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_gradgradcheck(cfg):
    cin, cout, k, s, p, d, g, bias = cfg
    torch.manual_seed(0)
    x = torch.randn(2, cin, 7, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cout, cin // g, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, dtype=torch.float64, requires_grad=True) if bias else None
    inputs = (x, w) + ((b,) if bias else ())

    def f(x, w, b=None):
        return fast_conv.conv2d(x, w, b, (s, s), (p, p), (d, d), g)

    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_second_order_equals_torch(cfg):
    """The gradient of a function of the first gradients (what NIO differentiates) equals torch's own."""
    cin, cout, k, s, p, d, g, bias = cfg
    torch.manual_seed(1)
    x0 = torch.randn(3, cin, 8, 8, dtype=torch.float64)
    w0 = torch.randn(cout, cin // g, k, k, dtype=torch.float64)
    b0 = torch.randn(cout, dtype=torch.float64) if bias else None
    out = {}
    for name, conv in (("torch", F.conv2d), ("fast", fast_conv.conv2d)):
        x = x0.clone().requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True) if bias else None
        y = conv(x, w, b, (s, s), (p, p), (d, d), g)
        loss = (y.tanh() ** 2).sum()
        firsts = torch.autograd.grad(loss, [x, w] + ([b] if bias else []), create_graph=True)
        obj = sum((f_ ** 2).sum() for f_ in firsts) + firsts[1].abs().sum()
        out[name] = torch.autograd.grad(obj, [x, w] + ([b] if bias else []))
    for a, c in zip(out["torch"], out["fast"]):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bn_mode", ["batch", "calibrated"])
def test_nio_objective_scale_gradients_unchanged(bn_mode):
    """install() on NIO's scoring copy: same objective and scale gradients as torch's convolution (float64)."""
    torch.manual_seed(2)
    model = models.create("resnet20").double()
    x, y = torch.randn(12, 3, 16, 16, dtype=torch.float64), torch.randint(0, 10, (12,))
    grads = {}
    for fast in (False, True):
        net = scoring_copy(model, bn_mode, primitive=False)
        if fast:
            fast_conv.install(net)
            assert any(type(m) is fast_conv.FastConv2d for m in net.modules())
        ctx = Context(net=net, loss=None, mode="batch", bn_mode=bn_mode, has_bn=True, sub_batches=2, overlap=0.6,
                      gamma=1e30)
        sp = ScaledParams(trainable(net))
        leaves = list(sp.scales.values())
        obj, _, _ = nio_objective(ctx, sp.params(), x, y)
        grads[fast] = (float(obj.detach()), torch.autograd.grad(obj, leaves))
    assert grads[True][0] == pytest.approx(grads[False][0], rel=1e-12)
    for a, c in zip(grads[False][1], grads[True][1]):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)
    assert all(type(m) is nn.Conv2d for m in model.modules() if isinstance(m, nn.Conv2d))  # caller untouched


def test_fallbacks_keep_torch_convolution():
    conv = nn.Conv2d(3, 4, 3, padding="same").double()
    ref = copy.deepcopy(conv)
    fast_conv.install(nn.Sequential(conv))
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    assert type(conv) is fast_conv.FastConv2d
    torch.testing.assert_close(conv(x), ref(x))  # string padding: nn.Conv2d's own path
    torch.testing.assert_close(conv(x[0]), ref(x[0]))  # unbatched input


def test_third_order_gradgradcheck():
    """MetaInit differentiates a Hessian-vector product: the double backward itself must be differentiable."""
    torch.manual_seed(3)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)

    def first_grads(x, w):
        y = fast_conv.conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 1)
        return torch.autograd.grad((y.tanh() ** 2).sum(), (x, w), create_graph=True)

    assert torch.autograd.gradgradcheck(first_grads, (x, w))
