"""NAS-Bench-201 search space (torch-free declaration; network in nb201_net.py).

A cell is written in the NAS-Bench-201 string form
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: node j (1..3) sums one operation on each
earlier node i < j, written ``op~i`` in increasing i. Operations:
none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3.

Macro skeleton (Dong & Yang, "NAS-Bench-201", ICLR 2020; the official ``TinyNetwork``):
stem Conv3x3(3->C) + BN, then three stages of N cells with C, 2C, 4C channels separated
by ResNet basic blocks of stride 2 (ReLU-Conv3x3-BN twice, shortcut AvgPool2x2 + Conv1x1),
then BN + ReLU, global average pooling and a linear classifier.
"""
from __future__ import annotations

from initscore.models.registry import Arg, register_model

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4  # node 0 is the cell input; nodes 1..3 are computed


def parse_cell(cell: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """Parse a cell string into ((op, input), ...) per computed node; raise ValueError on any deviation."""
    if not isinstance(cell, str):
        raise ValueError(f"a cell must be a string, got {type(cell).__name__}")
    nodes = cell.split("+")
    if len(nodes) != NUM_NODES - 1:
        raise ValueError(
            f"a cell has 3 nodes separated by '+', got {len(nodes)} in {cell!r}; "
            "expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        )
    parsed: list[tuple[tuple[str, int], ...]] = []
    for j, node in enumerate(nodes, start=1):
        if len(node) < 2 or not node.startswith("|") or not node.endswith("|"):
            raise ValueError(f"node {j} of the cell must look like |op~i|...|, got {node!r}")
        edges = node[1:-1].split("|")
        if len(edges) != j:
            raise ValueError(f"node {j} of the cell needs exactly {j} edge(s) (inputs 0..{j - 1}), got {len(edges)} in {node!r}")
        out: list[tuple[str, int]] = []
        for i, edge in enumerate(edges):
            op, sep, src = edge.partition("~")
            if not sep:
                raise ValueError(f"edge {edge!r} of node {j} must be op~input")
            if op not in OPS:
                raise ValueError(f"unknown operation {op!r} in node {j}; allowed: {list(OPS)}")
            if src != str(i):
                raise ValueError(f"edge {i} of node {j} must read from node {i} ('{op}~{i}'), got {edge!r}")
            out.append((op, i))
        parsed.append(tuple(out))
    return tuple(parsed)


def check_cell(cell: object) -> str | None:
    """Arg validator: None if `cell` is a valid NAS-Bench-201 cell string, else the reason."""
    try:
        parse_cell(cell)  # type: ignore[arg-type]
    except ValueError as exc:
        return str(exc)
    return None


def _op_params(op: str, c: int, variant: str = "official") -> int:
    # official: ReLU-Conv(k x k, no bias)-BN(affine): k*k*c*c weights + 2c BN affine parameters
    # zero_cost_nas: ReLU-Conv(k x k, bias)-BN(no affine): k*k*c*c weights + c biases
    extra = 2 * c if variant == "official" else c
    if op == "nor_conv_3x3":
        return 9 * c * c + extra
    if op == "nor_conv_1x1":
        return c * c + extra
    return 0  # none, skip_connect, avg_pool_3x3 (stride 1, same channels) have no parameters


def _resblock_params(cin: int, cout: int) -> int:
    # conv_a 3x3 cin->cout + BN, conv_b 3x3 cout->cout + BN, shortcut conv1x1 cin->cout (no BN)
    return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout + cin * cout


def count_params(cell: str, num_classes: int = 10, C: int = 16, N: int = 5, variant: str = "official") -> int:
    """Pure-Python parameter count of `nb201` (equals the torch count)."""
    ops = [op for node in parse_cell(cell) for op, _ in node]
    total = 3 * C * 9 + 2 * C  # stem conv + BN
    for c in (C, 2 * C, 4 * C):
        total += N * sum(_op_params(op, c, variant) for op in ops)
    total += _resblock_params(C, 2 * C) + _resblock_params(2 * C, 4 * C)
    total += 2 * 4 * C  # lastact BN
    total += 4 * C * num_classes + num_classes  # classifier
    return total


_ARGS = {
    "cell": Arg("str", None, required=True, check=check_cell, help="NAS-Bench-201 cell |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"),
    "num_classes": Arg("int", 10, lo=1, hi=100_000),
    "C": Arg("int", 16, lo=1, hi=1024, help="channels of the first stage (2C, 4C after the reductions)"),
    "N": Arg("int", 5, lo=1, hi=64, help="cells per stage"),
    "variant": Arg("str", "official", choices=("official", "zero_cost_nas"),
                   help="official TinyNetwork, or the zero-cost-nas NB201 model (cell convs with bias, "
                        "cell BN without affine) on which the published proxy correlations were measured"),
}


@register_model("nb201", family="nb201", args=_ARGS, count_params=count_params, input_shape=(3, 32, 32))
def nb201(**kwargs):
    """NAS-Bench-201 cell network (official TinyNetwork skeleton, C=16, N=5), PyTorch default init."""
    from initscore.models.nb201_net import NB201Network

    return NB201Network(**kwargs)
