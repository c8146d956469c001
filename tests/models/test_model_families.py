"""Every registered architecture: pure-Python parameter count == torch count, forward+backward, bad specs.

The parameter-count test is the contract of the torch-free registry: the service caps
model size from `get_entry(name).num_params(args)` without torch, so it must be exact.
"""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from initscore import models
from initscore.errors import SpecError

ALL = sorted(m["name"] for m in models.list_models())

# small, fast variants per architecture (name -> kwargs); defaults are tested separately
VARIANTS: list[tuple[str, dict]] = [
    ("mlp", {"depth": 2, "hidden": 8, "num_classes": 3}),
    ("resnet20", {"bn": False}),
    ("resnet20", {"num_classes": 100}),
    ("resnet20", {"shortcut": "B"}),
    ("resnet20", {"shortcut": "A-bn", "bn": False}),
    ("resnet32", {"bn": False, "shortcut": "B", "num_classes": 7}),
    ("resnet56", {"bn": False}),
    ("resnet20", {"bn": False, "init": "fixup"}),
    ("resnet110", {"bn": False, "init": "fixup", "num_classes": 100}),
    ("resnet110", {"shortcut": "A-bn"}),
    ("densenet100", {"bn": False}),
    ("densenet100", {"num_classes": 100}),
    ("densenet", {"depth": 22, "growth_rate": 6, "compression": 0.7, "bn": False}),
    ("wrn28_10", {"bn": False, "num_classes": 100}),
    ("wrn", {"depth": 16, "width": 2, "dropout": 0.3}),
    ("wrn", {"depth": 10, "width": 1, "bn": False}),
    ("torchvision:resnet50", {"num_classes": 10}),
    ("torchvision:swin_t", {"num_classes": 10}),
    ("torchvision:vit_b_16", {"num_classes": 10, "image_size": 32}),
    ("torchvision:vit_b_16", {"image_size": 384}),
]

# literature values (num_classes 10 unless stated), to catch a counter and a net that agree but are wrong
LITERATURE = {
    ("resnet20", ()): 269_722,  # option A; 0.27M in He et al. Table 6
    ("resnet20", (("shortcut", "B"),)): 272_474,  # the projection-shortcut ResNet-20 of many repositories
    ("resnet56", ()): 853_018,  # 0.85M
    ("resnet110", ()): 1_727_962,  # 1.7M
    ("densenet100", ()): 769_162,  # DenseNet-BC k=12: 0.8M
    ("wrn28_10", ()): 36_479_194,  # 36.5M
    ("torchvision:resnet50", ()): 25_557_032,
    ("torchvision:swin_t", ()): 28_288_354,
    ("torchvision:vit_b_16", ()): 86_567_656,
}

# per-arch forward kwargs/input side that keep CPU time small
FAST_BUILD = {
    "torchvision:vit_b_16": ({"num_classes": 5, "image_size": 32}, 32),
    "torchvision:resnet50": ({"num_classes": 5}, 64),
    "torchvision:swin_t": ({"num_classes": 5}, 64),
    "wrn28_10": ({"num_classes": 5}, 32),
    "wrn": ({"depth": 10, "width": 1, "num_classes": 5}, 32),
    "densenet": ({"depth": 16, "growth_rate": 4, "num_classes": 5}, 32),
}


def torch_count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# examples of required arguments (other families' archs); an arch whose required args are not here is skipped
REQUIRED_EXAMPLES = {
    "nb201": {"cell": "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"},
}


def _needs_required(name: str) -> bool:
    given = REQUIRED_EXAMPLES.get(name, {})
    return any(a.required and k not in given for k, a in models.get_entry(name).args.items())


@pytest.mark.parametrize("name", ALL)
def test_default_count_matches_torch(name: str) -> None:
    if _needs_required(name):
        pytest.skip(f"{name} has required arguments (covered by its family's tests)")
    entry = models.get_entry(name)
    if entry.count_params is None:
        pytest.skip(f"{name} has no pure-Python counter")
    req = REQUIRED_EXAMPLES.get(name, {})
    assert entry.num_params(req) == torch_count(models.create(name, **req))


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=[f"{n}-{k}" for n, k in VARIANTS])
def test_variant_count_matches_torch(name: str, kwargs: dict) -> None:
    if name not in ALL:
        pytest.skip(f"{name} not registered")
    assert models.get_entry(name).num_params(kwargs) == torch_count(models.create(name, **kwargs))


@pytest.mark.parametrize("key,value", sorted(LITERATURE.items()), ids=[k[0] + str(k[1]) for k in sorted(LITERATURE)])
def test_counts_match_literature(key: tuple, value: int) -> None:
    name, args = key
    assert models.get_entry(name).num_params(dict(args)) == value


def test_counts_need_no_torch() -> None:
    code = (
        "import sys\nfrom initscore import models\n"
        "for n in ['resnet20','resnet110','densenet100','wrn28_10','torchvision:vit_b_16','torchvision:swin_t']:\n"
        "    models.get_entry(n).num_params({})\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)\nprint('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_tiny_batch(name: str) -> None:
    entry = models.get_entry(name)
    if _needs_required(name):
        pytest.skip(f"{name} has required arguments (covered by its family's tests)")
    kwargs, side = FAST_BUILD.get(name, ({}, None))
    kwargs = {**REQUIRED_EXAMPLES.get(name, {}), **kwargs}
    torch.manual_seed(0)
    model = models.create(name, **kwargs)
    shape = entry.input_shape or (3, 32, 32)
    if side is not None:
        shape = (shape[0], side, side)
    x = torch.randn(2, *shape)
    out = model(x)
    n_classes = entry.validate(kwargs).get("num_classes")
    if n_classes is not None:
        assert out.shape == (2, n_classes)
    assert torch.isfinite(out).all()
    loss = nn.functional.cross_entropy(out, torch.tensor([0, 1]) % out.shape[1])
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("name", ["resnet20", "densenet", "wrn"])
def test_bn_false_replaces_every_bn_by_a_zero_bias(name: str) -> None:
    from initscore.models._layers import ChannelBias

    small = {"densenet": {"depth": 16, "growth_rate": 4}, "wrn": {"depth": 10, "width": 1}}.get(name, {})
    with_bn = models.create(name, **small)
    no_bn = models.create(name, bn=False, **small)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert n_bn > 0
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in no_bn.modules())
    biases = [m for m in no_bn.modules() if isinstance(m, ChannelBias)]
    assert len(biases) == n_bn
    assert all(torch.count_nonzero(b.bias) == 0 for b in biases)
    # the bias acts per channel: a constant shift of channel c by b[c]
    b = biases[0]
    b.bias.data = torch.arange(b.bias.numel(), dtype=torch.float32)
    z = torch.zeros(1, b.bias.numel(), 2, 2)
    assert torch.equal(b(z)[0, :, 1, 1], b.bias.data)


def test_option_a_shortcut_is_zero_padded_strided_identity() -> None:
    from initscore.models.resnet_cifar_net import PadShortcut

    x = torch.randn(2, 16, 8, 8)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    assert sum(p.numel() for p in PadShortcut(16, 32, 2).parameters()) == 0


def test_resnet20_stage_shapes() -> None:
    m = models.create("resnet20")
    x = torch.randn(1, 3, 32, 32)
    h = torch.relu(m.bn1(m.conv1(x)))
    shapes = []
    for layer in (m.layer1, m.layer2, m.layer3):
        h = layer(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert sum(isinstance(mod, nn.Conv2d) for mod in m.modules()) == 19  # 1 + 2 * 9 conv layers, + fc = 20


def test_kaiming_fan_out_init_and_bn_constants() -> None:
    torch.manual_seed(0)
    m = models.create("resnet110")
    w = m.layer3[5].conv2.weight.detach().double()  # 64 x 64 x 3 x 3 = 36,864 weights
    expected = math.sqrt(2.0 / (64 * 9))  # kaiming_normal_, mode fan_out, ReLU gain
    assert abs(float(w.std()) / expected - 1) < 0.03
    assert abs(float(w.mean())) < 3 * expected / math.sqrt(w.numel())
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    assert torch.all(m.fc.bias == 0)


@pytest.mark.parametrize(
    "name,kwargs,fragment",
    [
        ("resnet20", {"depth": 3}, "unknown argument"),
        ("resnet20", {"bn": "yes"}, "true or false"),
        ("resnet20", {"num_classes": 0}, ">= 1"),
        ("resnet20", {"num_classes": 2.5}, "integer"),
        ("resnet20", {"shortcut": "C"}, "one of"),
        ("densenet", {"depth": 99}, "6n \\+ 4"),
        ("wrn", {"depth": 27}, "6n \\+ 4"),
        ("wrn", {"dropout": 1.5}, "<="),
        ("torchvision:vit_b_16", {"image_size": 100}, "multiple of"),
        ("torchvision:resnet50", {"bn": False}, "unknown argument"),
    ],
)
def test_bad_kwargs_raise_spec_error(name: str, kwargs: dict, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        models.create(name, **kwargs)
    with pytest.raises(SpecError):
        models.get_entry(name).num_params(kwargs)
    with pytest.raises(SpecError):
        models.validate_spec({"arch": name, "args": kwargs})


def test_unknown_arch_is_spec_error() -> None:
    with pytest.raises(SpecError, match="unknown architecture"):
        models.build({"arch": "resnet21"})


def test_build_from_json_spec() -> None:
    m = models.build({"arch": "resnet20", "args": {"bn": False, "num_classes": 4}})
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 4)


@pytest.mark.parametrize("name", ["torchvision:resnet50", "torchvision:swin_t", "torchvision:vit_b_16"])
def test_torchvision_at_224(name: str) -> None:
    """Batch-1 forward at the native 224 px (about 1.5 s each on one CPU core here)."""
    model = models.create(name)
    out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
