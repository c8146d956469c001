"""initscore.hook_grads: per-sample gradients from one batched backward equal vmap's and a naive loop's (float64)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from initscore import bn as bnmod
from initscore import models
from initscore.hook_grads import hook_grad_fn, unsupported_reason
from initscore.scores import default_loss, gradcosine, sample_grad_fn, trainable

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
MODELS = [
    ("nb201", {"cell": CELL, "C": 4, "N": 1}),
    ("nb201", {"cell": CELL, "C": 4, "N": 1, "variant": "zero_cost_nas"}),
    ("resnet20", {}),
    ("resnet20", {"bn": False}),
    ("resnet20", {"shortcut": "B"}),
    ("densenet", {"depth": 10}),
    ("wrn", {"depth": 10, "width": 1, "dropout": 0.3}),
    ("mlp", {"hidden": 16, "activation": "gelu"}),
]


def _batch(n: int = 5, seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)


def _perturb_bn(model: nn.Module, zero: bool = False) -> nn.Module:
    """BN affine away from its (1, 0) init, so xhat recovered from the output is really tested; with `zero`,
    one weight entry is 0 (xhat then comes from the input's statistics)."""
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g, dtype=m.weight.dtype) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype) * 0.3)
                if zero:
                    m.weight[0] = 0.0
    return model


def _scoring(model: nn.Module, mode: str, x: torch.Tensor) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    net = bnmod.scoring_copy(model, mode, primitive=True)
    params = trainable(net)
    if mode == "calibrated" and bnmod.has_batchnorm(model):
        bnmod.calibrate(net, params, x)
    return net, params


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """max |a - b| over every tensor relative to the largest |a| (a tensor whose true gradient is 0, such as
    a BN bias feeding another per-sample BN, holds only rounding noise: a per-tensor ratio means nothing)."""
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    scale = max(float(v.abs().max()) for v in a.values())
    return max(float((a[k] - b[k]).abs().max()) for k in a) / scale


@pytest.mark.parametrize("zero", [False, True], ids=["bn-weights", "a-zero-bn-weight"])
@pytest.mark.parametrize("mode", ["per_sample", "calibrated"])
@pytest.mark.parametrize("name,kwargs", MODELS, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in MODELS])
def test_hooks_match_vmap_float64(name, kwargs, mode, zero):
    torch.manual_seed(1)
    model = _perturb_bn(models.create(name, **kwargs).double(), zero)
    # 16x16 images still pass every stride-2 stage (16 -> 8 -> 4) at a quarter of the work; the MLP's input is 3x32x32
    x, y = _batch(size=32 if name == "mlp" else 16)
    net, params = _scoring(model, mode, x)
    assert unsupported_reason(net, params) is None
    hooked = hook_grad_fn(net, params, when="always")(params, x, y)
    assert _close(sample_grad_fn(net, default_loss)(params, x, y), hooked) < 1e-12
    assert all(not m.instance_kernel for m in bnmod.stat_layers(net))  # the kernel switch is restored


def test_hooks_match_a_naive_per_sample_loop_on_nb201():
    """Independent of vmap: each sample alone through the scoring copy, ordinary autograd."""
    torch.manual_seed(2)
    model = _perturb_bn(models.create("nb201", cell=CELL, C=4, N=1).double())
    x, y = _batch(4, seed=3)
    net, params = _scoring(model, "per_sample", x)
    hooked = hook_grad_fn(net, params, when="always")(params, x, y)
    names = list(params)
    rows = []
    for i in range(x.shape[0]):
        p = {n: t.detach().requires_grad_(True) for n, t in params.items()}
        loss = default_loss(torch.func.functional_call(net, p, (x[i:i + 1],)), y[i:i + 1])
        gs = torch.autograd.grad(loss, [p[n] for n in names], allow_unused=True)
        rows.append({n: (torch.zeros_like(params[n]) if g is None else g) for n, g in zip(names, gs)})
    naive = {n: torch.stack([r[n] for r in rows]) for n in names}
    assert _close(naive, hooked) < 1e-12


def test_hooks_cover_grouped_dilated_strided_convs_and_linear_on_extra_dims():
    """Layer shapes no registry model has: a grouped, dilated, strided conv with bias, a 1x1 conv, per-sample BN
    without affine, and a Linear applied to (B, T, F) rows (its per-sample gradient sums over T)."""
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2, groups=3), nn.BatchNorm2d(6, affine=False), nn.Tanh(),
        nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4), nn.GELU(), nn.Flatten(2),   # (B, 4, 256)
        nn.Linear(256, 5), nn.Tanh(), nn.Flatten(), nn.Linear(20, 10)).double()
    _perturb_bn(model)
    x, y = _batch(4, seed=6)
    for mode in ("per_sample", "calibrated"):
        net, params = _scoring(model, mode, x)
        assert unsupported_reason(net, params) is None
        hooked = hook_grad_fn(net, params, when="always")(params, x, y)
        assert _close(sample_grad_fn(net, default_loss)(params, x, y), hooked) < 1e-12


def test_inplace_activation_after_a_layer_falls_back_to_vmap():
    """ReLU(inplace=True) rewrites the conv's output after the hook saw it: the hooks' tensors would be wrong,
    so that batch takes the vmap path and the numbers still equal vmap's."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(4 * 32 * 32, 10)).double()
    x, y = _batch(3)
    net, params = _scoring(model, "calibrated", x)
    hooked = hook_grad_fn(net, params, when="always")(params, x, y)
    assert _close(sample_grad_fn(net, default_loss)(params, x, y), hooked) < 1e-12


def test_unsupported_models_are_named_and_left_to_vmap():
    x, _ = _batch(2)
    cases = {
        "batch statistics": (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), "batch"),
        "reflect padding": (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")), "calibrated"),
        "unknown layer": (nn.Sequential(nn.Flatten(), nn.LayerNorm(3 * 32 * 32)), "calibrated"),
        "unknown leaf": (nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4), nn.Softmax(dim=0)), "calibrated"),
        "lipschitz": (models.create("lipschitz_mlp", width=8), "calibrated"),
    }
    for what, (model, mode) in cases.items():
        net, params = _scoring(model, mode, x.float())
        reason = unsupported_reason(net, params)
        assert reason, what
        assert hook_grad_fn(net, params, when="always") is None, what
    frozen = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    frozen[1].bias.requires_grad_(False)
    net, params = _scoring(frozen, "calibrated", x.float())
    assert "frozen" in unsupported_reason(net, params)


def test_hooks_are_chosen_only_where_they_are_faster():
    """Default when='faster': per-sample BN -> hooks; calibrated BN or no BN -> None (vmap)."""
    x, _ = _batch(2)
    for mode, kwargs, chosen in (("per_sample", {}, True), ("calibrated", {}, False), ("per_sample", {"bn": False}, False)):
        net, params = _scoring(models.create("resnet20", **kwargs).double(), mode, x)
        assert (hook_grad_fn(net, params) is not None) is chosen, (mode, kwargs)
        assert hook_grad_fn(net, params, when="always") is not None
    with pytest.raises(ValueError):
        hook_grad_fn(net, params, when="sometimes")


def test_engine_sample_mode_on_hooks_equals_the_vmap_path():
    """gradcosine's default loss takes the hooks (with per-sample BN); a custom loss that is the same
    cross-entropy takes vmap."""
    torch.manual_seed(4)
    model = models.create("nb201", cell=CELL, C=4, N=1).double()
    x, y = _batch(6, seed=5)
    hooked = gradcosine(model, (x, y), bn="per_sample")
    vm = gradcosine(model, (x, y), bn="per_sample", loss=lambda z, t: nn.functional.cross_entropy(z, t))
    for attr in ("gc", "gn", "g_max", "g_min"):
        assert getattr(hooked, attr) == pytest.approx(getattr(vm, attr), rel=1e-10, abs=1e-14)


class _Scale(nn.Module):
    """A layer no registry model has: y = a * s, one learnable scale per channel."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, c, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


class _Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


def test_a_registered_layer_type_takes_the_hook_path_and_matches_vmap():
    """Opacus-style registration: an unknown layer is refused by name until a rule is registered for its type;
    a registered rule (here g_n(s) = sum_hw d_n a_n) is then used and must equal vmap's gradients."""
    from initscore.grad_samplers import register_grad_sampler, register_samplewise

    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _Scale(4), _Square(), nn.Flatten(),
                          nn.Linear(4 * 32 * 32, 10)).double()
    x, y = _batch(3, seed=9)
    net, params = _scoring(model, "calibrated", x)
    assert "no grad sampler" in unsupported_reason(net, params)

    @register_grad_sampler(_Scale)
    def _scale_grad(mod, owned, a, o, d):
        return {"weight": (d * a).sum(dim=(2, 3))}

    assert "_Square is not known to be sample-wise" in unsupported_reason(net, params)
    register_samplewise(_Square)
    assert unsupported_reason(net, params) is None
    hooked = hook_grad_fn(net, params, when="always")(params, x, y)
    assert _close(sample_grad_fn(net, default_loss)(params, x, y), hooked) < 1e-12
