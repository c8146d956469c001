"""NAS-Bench-201 builder: parameter counts from the architecture formula, strict cell grammar."""
from __future__ import annotations

import itertools
import random

import pytest
import torch

from initscore import models
from initscore.errors import SpecError
from initscore.models.nb201 import OPS

NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def cell_of(ops: list[str]) -> str:
    a, b, c, d, e, f = ops
    return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"


# Hand count of the skeleton with C=16, N=5, 10 classes (BN affine = 2 params per channel):
#   stem conv 3*16*9 = 432, BN 32
#   reduction 16->32: conv_a 16*32*9 = 4608 + BN 64, conv_b 32*32*9 = 9216 + BN 64, shortcut 1x1 16*32 = 512 -> 14464
#   reduction 32->64: 32*64*9 = 18432 + 128, 64*64*9 = 36864 + 128, 32*64 = 2048 -> 57600
#   lastact BN 2*64 = 128, classifier 64*10 + 10 = 650
#   skeleton = 432 + 32 + 14464 + 57600 + 128 + 650 = 73306 (the all-`none` cell: 0.0733 MB)
SKELETON = 432 + 32 + (4608 + 64 + 9216 + 64 + 512) + (18432 + 128 + 36864 + 128 + 2048) + 128 + 650
# one nor_conv_3x3 edge per stage: 9c^2 + 2c with c = 16, 32, 64, in N = 5 cells each
CONV3_EDGE_ALL_STAGES = 5 * ((9 * 16 * 16 + 32) + (9 * 32 * 32 + 64) + (9 * 64 * 64 + 128))


@pytest.mark.parametrize(
    "cell,expected",
    [
        (NONE, SKELETON),  # 73306
        (CONV3, SKELETON + 6 * CONV3_EDGE_ALL_STAGES),  # 1531546: the largest cell (1.53 MB)
        (RESNET, SKELETON + 2 * CONV3_EDGE_ALL_STAGES),  # 559386
    ],
)
def test_known_cell_param_counts(cell: str, expected: int) -> None:
    assert SKELETON == 73306
    assert models.get_entry("nb201").num_params({"cell": cell}) == expected
    net = models.create("nb201", cell=cell)
    assert sum(p.numel() for p in net.parameters()) == expected


def test_pure_python_count_equals_torch_for_random_cells() -> None:
    rng = random.Random(0)
    for k in range(8):
        cell = cell_of([rng.choice(OPS) for _ in range(6)])
        args = {"cell": cell, "C": rng.choice([2, 4, 6]), "N": rng.choice([1, 2]), "num_classes": rng.choice([3, 10]),
                "variant": ("official", "zero_cost_nas")[k % 2]}
        net = models.create("nb201", **args)
        assert models.get_entry("nb201").num_params(args) == sum(p.numel() for p in net.parameters())


def test_zero_cost_nas_variant_cell_ops() -> None:
    # zero-cost-nas nasbench2_ops: cell ReLU-Conv(bias)-BN(affine=False, no running stats); per conv op the
    # 2C BN affine parameters become C conv biases; reduction-block BNs are marked to stay in synflow
    zc = models.create("nb201", cell=RESNET, variant="zero_cost_nas")
    official = models.create("nb201", cell=RESNET)
    n_conv_ops = 2 * 5  # two nor_conv_3x3 edges per cell, 5 cells per stage
    assert sum(p.numel() for p in official.parameters()) - sum(p.numel() for p in zc.parameters()) == n_conv_ops * (16 + 32 + 64)
    cell_bns = [m for m in zc.cells.modules() if isinstance(m, torch.nn.BatchNorm2d) and not getattr(m, "keep_in_synflow", False)]
    assert cell_bns and all(not m.affine and not m.track_running_stats for m in cell_bns)
    kept = [m for m in zc.modules() if getattr(m, "keep_in_synflow", False)]
    assert len(kept) == 4 and all(m.affine for m in kept)  # conv_a, conv_b BN of the two reduction blocks
    assert not any(getattr(m, "keep_in_synflow", False) for m in official.modules())
    with pytest.raises(SpecError):
        models.create("nb201", cell=RESNET, variant="nope")


def test_forward_shape_and_ops() -> None:
    torch.manual_seed(0)
    net = models.build({"arch": "nb201", "args": {"cell": cell_of(list(OPS) + ["nor_conv_1x1"]), "C": 4, "N": 1, "num_classes": 7}})
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert net.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 16, 8, 8)


def test_all_none_cell_output_ignores_input() -> None:
    # with every edge `none`, each stage's cells output zeros; logits are input independent
    torch.manual_seed(0)
    net = models.create("nb201", cell=NONE, C=4, N=1).eval()
    a, b = net(torch.randn(2, 3, 32, 32)), net(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "cell,fragment",
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", "3 nodes"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown operation 'conv'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read from node 0"),
        ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "must read from node 0"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "exactly 2 edge"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must look like"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "op~input"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2| ", "must look like"),
        ("", "3 nodes"),
    ],
)
def test_cell_validation_errors(cell: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment.replace("(", r"\(")):
        models.validate_spec({"arch": "nb201", "args": {"cell": cell}})


def test_cell_is_required_and_typed() -> None:
    with pytest.raises(SpecError, match="required"):
        models.validate_spec({"arch": "nb201", "args": {}})
    with pytest.raises(SpecError, match="string"):
        models.validate_spec({"arch": "nb201", "args": {"cell": 3}})


def test_every_one_of_the_15625_strings_is_valid_and_distinct() -> None:
    from initscore.models.nb201 import check_cell

    cells = {cell_of(list(ops)) for ops in itertools.product(OPS, repeat=6)}
    assert len(cells) == 15625
    assert all(check_cell(c) is None for c in cells)
