"""A runnable tour of the client (the example of docs/service.md):

    initscore serve --inline &            # or the queued service
    python -m client.tour [URL] [--api-key KEY]

score -> rectify (download + load the weights) -> a 20-architecture NAS-Bench-201 batch.
Uses synthetic CIFAR-shaped data so it runs anywhere; pass --cifar ROOT for real images.
"""
from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from client import Client

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def random_cells(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    cells: list[str] = []
    while len(cells) < n:
        nodes = ["|" + "|".join(f"{rng.choice(OPS)}~{i}" for i in range(j)) + "|" for j in (1, 2, 3)]
        cell = "+".join(nodes)
        if cell not in cells:
            cells.append(cell)
    return cells


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url", nargs="?", default="http://127.0.0.1:8000")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--cifar", default=None, help="CIFAR-10 root under the service's allowed roots")
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()
    data = ({"kind": "cifar10", "root": a.cifar, "batch_size": a.batch_size} if a.cifar
            else {"kind": "synthetic", "shape": [3, 32, 32], "batch_size": a.batch_size})
    with Client(a.url, api_key=a.api_key) as c:
        s = c.wait(c.submit_score({"arch": "resnet20", "args": {"bn": False}}, data), raise_on_failure=True)
        print(f"score    resnet20 (no BN): GC={s['result']['gc']:.4f} GN={s['result']['gn']:.4g}")

        r = c.wait(c.submit_rectify("resnet20", data, {"iters": 10, "lr": 0.01}), progress=True, raise_on_failure=True)
        res = r["result"]
        print(f"rectify  resnet20 NIO: held-out GC {res['heldout_before']['gc']:.4f} -> {res['heldout_after']['gc']:.4f}")
        path = c.download_weights(r, Path(tempfile.gettempdir()) / f"{r['id']}.safetensors")
        print(f"weights  {path} ({path.stat().st_size} bytes, sha256 {r['weights_sha256'][:12]}...)")
        from initscore import models

        net = c.load_rectified(r, models.create("resnet20"))
        print(f"loaded   into {type(net).__name__} with {sum(p.numel() for p in net.parameters())} parameters")

        cells = random_cells(20)
        b = c.wait(c.submit_batch([{"arch": "nb201", "args": {"cell": x}} for x in cells], data), progress=True,
                   raise_on_failure=True)
        g = c.group(b["group_id"])
        print(f"batch    {g['total']} NAS-Bench-201 cells ranked by {g['rank_by']}; top 3:")
        for e in g["entries"][:3]:
            print(f"  #{e['rank']} {e['model']['args']['cell']}  GC={e['score']:.4f}")


if __name__ == "__main__":
    main()
