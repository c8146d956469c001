"""The hand-written BatchNorm double backward (initscore.bn.BatchStatNorm) against torch's own, float64."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from initscore import bn as bnmod
from initscore.bn import BatchStatNorm


def _first_and_second(fn, x, w, b, gy, cot):
    y = fn(x, w, b)
    inputs = (x, w, b) if w is not None else (x,)
    g = torch.autograd.grad(y, inputs, gy, create_graph=True)
    wrt = (x, w, gy) if w is not None else (x, gy)
    cots = cot[: len(g)]
    return y, g, torch.autograd.grad(g, wrt, cots)


@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (7, 4), (3, 2, 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_torch_batch_norm_to_second_order(shape, affine):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_()
    C = shape[1]
    w = torch.randn(C, generator=g, dtype=torch.float64).requires_grad_() if affine else None
    b = torch.randn(C, generator=g, dtype=torch.float64).requires_grad_() if affine else None
    gy = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
    cot = (torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(C, generator=g, dtype=torch.float64),
           torch.randn(C, generator=g, dtype=torch.float64))
    ref = _first_and_second(lambda x, w, b: nn.functional.batch_norm(x, None, None, w, b, True, 0.0, 1e-5),
                            x, w, b, gy, cot)
    ours = _first_and_second(lambda x, w, b: BatchStatNorm.apply(x, w, b, 1e-5), x, w, b, gy, cot)
    torch.testing.assert_close(ours[0], ref[0], rtol=0, atol=1e-13)
    for a, r in zip(ours[1], ref[1]):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    for a, r in zip(ours[2], ref[2]):
        assert float(r.abs().max()) > 1e-3  # the cotangents reach every input: not a vacuous comparison
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-11)


def test_gradcheck_and_gradgradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    f = lambda x, w, b: BatchStatNorm.apply(x, w, b, 1e-5)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_third_order_matches_primitive_batch_norm():
    """create_graph in the double backward: exact third-order terms (vs var_mean-based BN, float64)."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(5, 3, 2, 2, generator=g, dtype=torch.float64)
    w0 = torch.randn(3, generator=g, dtype=torch.float64)
    b0 = torch.randn(3, generator=g, dtype=torch.float64)

    def primitive(x, w, b):
        var, mean = torch.var_mean(x, dim=[0, 2, 3], correction=0, keepdim=True)
        return (x - mean) * torch.rsqrt(var + 1e-5) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)

    results = []
    for fn in (primitive, lambda x, w, b: BatchStatNorm.apply(x, w, b, 1e-5)):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        y = fn(x, w, b)
        gx, gw = torch.autograd.grad(y.pow(3).sum(), (x, w), create_graph=True)
        hx, hw = torch.autograd.grad(gx.pow(2).sum() + gw.pow(2).sum(), (x, w), create_graph=True)
        results.append(torch.autograd.grad(hx.pow(2).sum() + hw.sum(), (x, w)))
    for a, r in zip(*results):
        assert float(r.abs().max()) > 1e-3
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


def test_statbn_uses_it_outside_vmap_and_falls_back_under_vmap():
    bn = nn.BatchNorm2d(3)
    layer = bnmod.StatBN(bn, "batch", primitive=False)
    x = torch.randn(2, 5, 3, 4, 4, dtype=torch.float32)
    y = layer(x[0])
    assert y.grad_fn is not None and "BatchStatNorm" in type(y.grad_fn).__name__
    under = torch.func.vmap(layer)(x)  # per-slice statistics through batch_norm
    torch.testing.assert_close(under[0], y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(under[1], nn.functional.batch_norm(x[1], None, None, bn.weight, bn.bias, True, 0.0,
                                                                  bn.eps), rtol=1e-5, atol=1e-5)
