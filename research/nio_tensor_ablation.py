"""Which tensors get scales? The cpu preset's NIO with ``scale_tensors`` restricted.

Rectification only (no training) on the tuning seeds 10/11 and data seed 1 (never the reported run's), held-out
exact GradCosine before/after, via ``research.ablation.run_ablation``. Prints one markdown row per
variant (per-seed values) and writes the rows as JSON.

    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python -m research.nio_tensor_ablation --pool 2000
    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python -m research.nio_tensor_ablation --pool 10000
    flock /tmp/initscore-bench.lock env OMP_NUM_THREADS=2 .venv/bin/python -m research.nio_tensor_ablation --pool 2000 --bn
    ... -m research.nio_tensor_ablation --pool 2000 --seeds 10,11,12,13 --variants "fc only,fc only margin 0.4,fc only margin 0.5"
    ... -m research.nio_tensor_ablation --pool 10000 --seeds 10,11,12,13 --variants "fc only,fc only verify 4"
"""
from __future__ import annotations

from research.ablation import tuning_main, variant
from research.nobn_study import PRESET_NIO

# ResNet-20 parameter names: conv1.weight, layer{1,2,3}.{0,1,2}.conv{1,2}.weight, fc.weight (+ BN affine / biases)
VARIANTS = {
    "all tensors": variant(PRESET_NIO),  # the cpu preset before Follow-up 4 (and still for the BN network)
    "fc only": variant(PRESET_NIO, scale_tensors=["fc.weight"]),
    "all but fc": variant(PRESET_NIO, scale_tensors=["!fc.*"]),
    "block conv2 only": variant(PRESET_NIO, scale_tensors=["layer*.conv2.weight"]),
    "block conv1 only": variant(PRESET_NIO, scale_tensors=["layer*.conv1.weight"]),
    "stem conv + fc": variant(PRESET_NIO, scale_tensors=["conv1.weight", "fc.weight"]),
    # the held-out bound with the classifier alone (Follow-up 4: the reported run exceeded gamma on 2 of 3 seeds)
    "fc only margin 0.4": variant(PRESET_NIO, scale_tensors=["fc.weight"], gamma_margin=0.4),
    "fc only margin 0.5": variant(PRESET_NIO, scale_tensors=["fc.weight"], gamma_margin=0.5),
    # the returned iterate also checked on 4 more training batches (256 images, twice the held-out 128;
    # research/nio_investigation.md "Follow-up 6")
    "fc only verify 4": variant(PRESET_NIO, scale_tensors=["fc.weight"], verify_batches=4),
}

if __name__ == "__main__":
    tuning_main(VARIANTS, __doc__.splitlines()[0], "nio_tensor_ablation")
