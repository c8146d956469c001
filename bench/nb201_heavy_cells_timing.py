"""Cost of `ensemble`, its identity_gain pass and the four capacity inputs on three heavy NB201 cells.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/nb201_heavy_cells_timing.py

B = 64 real CIFAR-10 training images, 2 torch threads, a built network, `compute_many` per call; the median of 7
interleaved repeats after one warm call. The all-3x3 cell is the space's heaviest.
"""
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from initscore import proxies, models
from initscore.data import load
from initscore.contract import DataRef
torch.set_num_threads(2)
d = load(DataRef(kind="cifar10", root=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_jpeg"), split="train", batch_size=64, limit=1024, seed=0))
batch = (d.x, d.y) if hasattr(d, "x") else d
cells = {"all conv3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "best (skip 0->3)": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
         "slow in the bench": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|avg_pool_3x3~2|"}
for name, cell in cells.items():
    torch.manual_seed(0); net = models.build({"arch": "nb201", "args": {"cell": cell}})
    proxies.compute_many(["ensemble"], net, batch)  # warm
    tot = {"ensemble": [], "identity_gain": [], "ensemble4": []}
    for _ in range(7):
        for key, names in (("ensemble", ["ensemble"]), ("identity_gain", ["identity_gain"]), ("ensemble4", ["synflow", "meco", "meco_opt", "swap"])):
            t = time.perf_counter(); proxies.compute_many(names, net, batch); tot[key].append(time.perf_counter() - t)
    print(name, {k: round(statistics.median(v), 3) for k, v in tot.items()})
