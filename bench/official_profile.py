"""profile="official" against a restatement of the authors' released code, and the paper profile beside it.

ResNet-20 with and without BN (init seed 0), 64 CIFAR-10 training images (seeded), at the released ImageNet
setting (D=4, r=0.2) and the paper's CIFAR default (D=2, r=0.6). Prints GC/GN of: the restated released code
(tests/engine/official_reference.py), initscore profile="official", and the paper profile with split="eq7"
and split="cover"; then median seconds of one GC evaluation and of one NIO step (official profile) against the
restatement. Run under the bench lock:

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/official_profile.py --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "engine"))

from official_reference import official_scores, official_steps  # noqa: E402

from initscore import data  # noqa: E402
from initscore.contract import RectifyOptions  # noqa: E402
from initscore.dataref import default_cifar10_root  # noqa: E402
from initscore.models import create  # noqa: E402
from initscore.nio import rectify  # noqa: E402
from initscore.scores import gradcosine  # noqa: E402


def _median_s(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(int(torch.get_num_threads()))
    td = data.load({"kind": "cifar10", "root": str(default_cifar10_root()), "limit": 512, "batch_size": 64})
    x, y = td.batch(64, 0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, B={len(y)}")
    for bn in (False, True):
        torch.manual_seed(0)
        model = create("resnet20", bn=bn)
        for D, r in ((4, 0.2), (2, 0.6)):
            ref = official_scores(model, x, y, D, r)
            off = gradcosine(model, (x, y), mode="batch", sub_batches=D, overlap=r, profile="official")
            eq7 = gradcosine(model, (x, y), mode="batch", sub_batches=D, overlap=r)
            cov = gradcosine(model, (x, y), mode="batch", sub_batches=D, overlap=r, split="cover")
            print(f"resnet20 bn={bn!s:5} D={D} r={r}: released(restated) gc {ref['gc']:.4f} gn {ref['gn']:.4f} | "
                  f"official gc {off.gc:.4f} gn {off.gn:.4f} (rel {abs(off.gc / ref['gc'] - 1):.1e}, "
                  f"{abs(off.gn / ref['gn'] - 1):.1e}) | paper eq7 gc {eq7.gc:.4f} gn {eq7.gn:.4f} | "
                  f"paper cover gc {cov.gc:.4f} gn {cov.gn:.4f}")
        t_ref = _median_s(lambda: official_scores(model, x, y, 4, 0.2), a.repeats)
        t_off = _median_s(lambda: gradcosine(model, (x, y), mode="batch", sub_batches=4, overlap=0.2,
                                             profile="official"), a.repeats)
        s_ref = _median_s(lambda: official_steps(model, x, y, D=4, r=0.2, gamma=1e6, target="gc_gn_sqrt", steps=1,
                                                 lr=3e-3), a.repeats)
        one_step = RectifyOptions(iters=1, lr=3e-3, gamma=1e6, sub_batches=4, overlap=0.2, profile="official",
                                  objective="gc_gn_sqrt")
        s_off = _median_s(lambda: rectify(model, (x, y), one_step, batch_size=64), a.repeats)
        print(f"  seconds (median of {a.repeats}), D=4 r=0.2: GC evaluation restated {t_ref:.3f} vs initscore "
              f"{t_off:.3f} ({t_ref / t_off:.2f}x); one NIO step restated {s_ref:.3f} vs initscore rectify(iters=1) "
              f"{s_off:.3f} ({s_ref / s_off:.2f}x)")


if __name__ == "__main__":
    main()
