"""timm models whose attention keeps ``attention_biases[:, idxs]`` between eval-mode forwards (TinyViT, LeViT,
EfficientFormer(V2), EfficientViT-MSRA) score as naive per-sample float64 autograd loops, and rectify runs."""
from __future__ import annotations

import copy
import inspect

import pytest
import torch
from torch import nn

from initscore import models, nio
from initscore.mode_caches import keeps_mode_state
from initscore.scores import gradcosine

timm = pytest.importorskip("timm")
F = nn.functional


def _build(name: str, **args) -> nn.Module:
    torch.manual_seed(0)
    net = models.build({"arch": f"timm:{name}", "args": {"num_classes": 10, **args}}).double()
    with torch.no_grad():  # timm starts attention biases at zero; random ones make a stale cache visible
        for n, p in net.named_parameters():
            if n.endswith("attention_biases"):
                p.normal_(0.0, 0.5)
    return net


def _calibrated_eval(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """A deep copy whose BatchNorms use the batch's mean and biased variance in eval mode (measured by hooks in a
    train-mode forward, which uses no attention cache and has no dropout at timm's defaults)."""
    ref = copy.deepcopy(net)
    stats, hooks = {}, []
    for name, mod in ref.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            def hook(module, inp, name=name):
                dims = [0] + list(range(2, inp[0].dim()))
                v, mu = torch.var_mean(inp[0], dim=dims, correction=0)
                stats[name] = (mu, v)
            hooks.append(mod.register_forward_pre_hook(hook))
    with torch.no_grad():
        ref.train()(x)
    for h in hooks:
        h.remove()
    for name, mod in ref.named_modules():
        if name in stats:
            mod.running_mean.copy_(stats[name][0])
            mod.running_var.copy_(stats[name][1])
    return ref.eval()


def _per_sample_reference(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """GC = ||sum_i g_i/||g_i|| ||^2 / B^2 and GN = mean ||g_i|| from one autograd call per sample, each on a fresh
    deep copy of the calibrated eval network (its attention cache empty, so filled from its own parameters)."""
    base = _calibrated_eval(net, x)
    units, norms = None, []
    for i in range(len(x)):
        m = copy.deepcopy(base)
        ps = [p for p in m.parameters() if p.requires_grad]
        gs = torch.autograd.grad(F.cross_entropy(m(x[i:i + 1]), y[i:i + 1]), ps, allow_unused=True)
        g = torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1) for p, gi in zip(ps, gs)])
        norms.append(float(g.norm()))
        units = g / g.norm() if units is None else units + g / g.norm()
    bias_grad = float(sum(gi.norm() for (n, _), gi in zip(m.named_parameters(), gs) if n.endswith("attention_biases")))
    return {"gc": float(units.norm() ** 2) / len(x) ** 2, "gn": sum(norms) / len(norms), "g_max": max(norms),
            "last_bias_grad": bias_grad}


@pytest.fixture(scope="module")
def tiny_vit() -> nn.Module:
    return _build("tiny_vit_5m_224")


def test_tiny_vit_5m_gradcosine_equals_the_per_sample_float64_loop(tiny_vit):
    torch.manual_seed(1)
    x, y = torch.randn(6, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (6,))
    ref = _per_sample_reference(tiny_vit, x, y)
    assert ref["last_bias_grad"] > 0  # the cached tensor is on the gradient path
    for chunk in (None, 2):  # one vmap call, and three (a kept tensor would cross calls)
        s = gradcosine(tiny_vit.eval(), (x, y), mode="sample", chunk_size=chunk)
        assert s.bn == "calibrated"
        assert s.gc == pytest.approx(ref["gc"], abs=1e-6), chunk
        assert s.gn == pytest.approx(ref["gn"], rel=1e-6), chunk
        assert s.g_max == pytest.approx(ref["g_max"], rel=1e-6), chunk
    assert all(not m.attention_bias_cache for m in tiny_vit.modules() if hasattr(m, "attention_bias_cache"))


def test_tiny_vit_5m_rectifies_one_step(tiny_vit):
    torch.manual_seed(2)
    x, y = torch.randn(8, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in tiny_vit.state_dict().items()}
    r = nio.rectify(tiny_vit.eval(), (x, y), iters=1, mode="batch", sub_batches=2, lr=0.1)
    assert len(r.history) == 1 and all(torch.isfinite(torch.tensor(r.history[0][k])) for k in ("gc", "gn", "g_max"))
    biases = [n for n in r.scales if n.endswith("attention_biases")]
    assert biases and all(r.scales[n] != 1.0 for n in biases)
    assert all(torch.equal(before[k], v) for k, v in tiny_vit.state_dict().items())  # the caller's model untouched


@pytest.mark.parametrize("name,args", [("efficientvit_m0", {"img_size": 32}), ("efficientformerv2_s0", {"img_size": 32})])
def test_other_cached_attention_families_score_as_the_loop(name, args):
    net = _build(name, **args)
    assert any(keeps_mode_state(m) for m in net.modules())
    torch.manual_seed(3)
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    ref = _per_sample_reference(net, x, y)
    s = gradcosine(net.eval(), (x, y), mode="sample", chunk_size=1)
    assert s.gc == pytest.approx(ref["gc"], abs=1e-6)
    assert s.gn == pytest.approx(ref["gn"], rel=1e-6)


def _batch_reference(net: nn.Module, x: torch.Tensor, y: torch.Tensor, D: int) -> dict[str, float]:
    """Batch mode with bn="batch" and overlap 0: each sub-batch's mean-loss gradient from a train-mode deep copy
    (batch statistics of that sub-batch; timm's drop rates are 0 by default)."""
    from initscore.scores import batch_splits

    units, norms = None, []
    for s, e in batch_splits(len(x), D, 0.0):
        m = copy.deepcopy(net).train()
        ps = [p for p in m.parameters() if p.requires_grad]
        gs = torch.autograd.grad(F.cross_entropy(m(x[s:e]), y[s:e]), ps, allow_unused=True)
        g = torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1) for p, gi in zip(ps, gs)])
        norms.append(float(g.norm()))
        units = g / g.norm() if units is None else units + g / g.norm()
    return {"gc": float(units.norm() ** 2) / D ** 2, "gn": sum(norms) / len(norms)}


def test_batchnorm_with_its_own_activation_keeps_it_in_the_scoring_copy():
    """timm's BatchNormAct2d (a BatchNorm2d subclass whose forward applies `drop` and `act`) was replaced by a
    StatBN without them: every EfficientNet/MobileNetV3-style model scored without those activations."""
    from timm.layers import BatchNormAct2d

    net = _build("mobilenetv3_small_050")
    assert any(type(m) is BatchNormAct2d and not isinstance(m.act, nn.Identity) for m in net.modules())
    torch.manual_seed(4)
    x, y = torch.randn(6, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (6,))
    ref = _per_sample_reference(net, x, y)
    s = gradcosine(net.eval(), (x, y), mode="sample")
    assert s.gc == pytest.approx(ref["gc"], abs=1e-6) and s.gn == pytest.approx(ref["gn"], rel=1e-6)
    b = gradcosine(net.eval(), (x, y), mode="batch", sub_batches=2, overlap=0.0)
    ref = _batch_reference(net, x, y, 2)
    assert b.gc == pytest.approx(ref["gc"], abs=1e-6) and b.gn == pytest.approx(ref["gn"], rel=1e-6)


def test_every_timm_module_that_keeps_mode_state_is_a_known_attention_bias_cache():
    """The engine drops kept state through a module's own train() override; this lists the timm classes that
    have one, so an upgrade that adds a new kind of kept state is looked at."""
    found = set()
    for mod_name, module in list(vars(timm.models).items()) + list(vars(timm.layers).items()):
        if not inspect.ismodule(module):
            continue
        for cls_name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, nn.Module) and cls.train is not nn.Module.train \
                    and cls.__module__.startswith("timm."):
                found.add(f"{cls.__module__}.{cls_name}")
    assert found == {
        "timm.models.levit.Attention", "timm.models.levit.AttentionDownsample",
        "timm.models.efficientformer.Attention", "timm.models.efficientformer_v2.Attention2d",
        "timm.models.efficientformer_v2.Attention2dDownsample",
        "timm.models.efficientvit_msra.CascadedGroupAttention", "timm.models.tiny_vit.Attention",
    }
    for name in found:
        mod, cls = name.rsplit(".", 1)
        assert "attention_bias_cache" in inspect.getsource(getattr(__import__(mod, fromlist=[cls]), cls))
