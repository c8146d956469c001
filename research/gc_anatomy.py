"""What held-out GradCosine measures at initialization: output error vectors x classifier features (torch).

For cross-entropy the per-sample gradient of the classifier's weight (the last ``nn.Linear``, z = W h + b) is
g_i = e_i h_i^T with e_i = softmax(z_i) - onehot(y_i), and since cos(a b^T, c d^T) = cos(a, c) cos(b, d)
(Frobenius inner product of outer products), that tensor's GradCosine (Algorithm 1, mean over all B^2 pairs)
is exactly::

    GC_W = (1/B^2) sum_ij cos(e_i, e_j) cos(h_i, h_j)                                   (``product``)

When the classifier's input features are nearly parallel across inputs (``feature_cosine`` -> 1), GC_W is the
error-vector cosine EC = (1/B^2) sum_ij cos(e_i, e_j) (``error_cosine``), a property of the network's OUTPUT
distribution only. EC is about 0 for a network that outputs the uniform distribution on a class-balanced batch
(cos(p - e_a, p - e_b) = -1/(K-1) for a != b), and it rises as every input is pushed to the same confident
prediction: a network whose output is the one-hot e_k for every input has e_i = e_k - e_{y_i}, cos = 1 for equal
labels and 1/2 for different ones (0 for y_i = k: a zero gradient has no direction), so with label frequencies pi::

    EC_k = sum_{a,b != k} pi_a pi_b (1 + [a = b]) / 2 = ((1 - pi_k)^2 + sum_{a != k} pi_a^2) / 2   (``ceiling``)

which is 0.45 for 10 balanced classes. Measured on the no-BN ResNet-20 at Kaiming init (research/nio_investigation.md,
"Follow-up 4"; tuning seeds 10/11): feature cosine 0.995, 99-100 % of held-out images predicted as the same
class, and the whole network's exact GC within 0.02 of EC (reported seeds 0-2: 78-100 %, within 0.01-0.08) --
GradCosine there measures how confidently the network predicts one class for every input, and it rises toward the
0.45 ceiling with the overall weight scale (and GN with it).

:func:`anatomy` measures these quantities on held-out batches; :func:`scale_sweep` along a global scale or a
scale of chosen tensors; :func:`main` is the command line::

    python -m research.gc_anatomy sweep --seeds 10,11 [--bn]       # tuning data (data seed 1)
    python -m research.gc_anatomy nio --seeds 0,1,2 --data-seed 0 --pool 10000 [--bn]
    python -m research.gc_anatomy report runs/exp_cpu [--methods kaiming,nio]   # a finished run
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from initscore.errors import OptionsError

Log = Callable[[str], None]


@dataclass(frozen=True)
class Anatomy:
    """Mean over held-out batches of the quantities in the module docstring (one network)."""

    gc: float              # exact sample-wise GradCosine of the whole network (Algorithm 1)
    gn: float              # exact GradNorm
    classifier: str        # name of the classifier's weight tensor
    classifier_gc: float   # the engine's per-tensor GC of that weight
    product: float         # mean_ij cos(e_i, e_j) cos(h_i, h_j): equals classifier_gc (identity above; e in the
                           # network's dtype, cosines in float64)
    error_cosine: float    # mean_ij cos(e_i, e_j), e = softmax(z) - onehot(y)
    feature_cosine: float  # mean_ij cos(h_i, h_j) at the classifier's input
    max_prob: float        # mean_i max softmax probability
    modal_share: float     # fraction of inputs predicted as the most frequent predicted class
    ceiling: float         # EC of a network predicting that modal class with certainty for every input

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_cosine_mean(v: Tensor) -> float:
    """(1/B^2) sum_ij cos(v_i, v_j) in float64; a zero row has no direction (cos 0), as in the engine's GC."""
    u = v.detach().double().flatten(1)
    n = u.norm(dim=1, keepdim=True)
    u = torch.where(n > 0, u / n.clamp_min(1e-300), torch.zeros_like(u))
    return float((u @ u.T).mean())


def constant_prediction_ceiling(labels: Tensor, k: int, num_classes: int) -> float:
    """EC of a network whose output is the one-hot e_k for every input: ((1 - pi_k)^2 + sum_{a != k} pi_a^2) / 2."""
    pi = torch.bincount(labels.flatten(), minlength=num_classes).double() / labels.numel()
    rest = torch.cat([pi[:k], pi[k + 1:]])
    return float(((1.0 - pi[k]) ** 2 + (rest ** 2).sum()) / 2.0)


def classifier_of(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` of ``model`` (module order), the layer whose input is the feature vector h."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise OptionsError("gc_anatomy needs a classifier: the model has no nn.Linear layer")
    return found[-1]


def _forward_parts(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(logits, classifier input) of one forward pass; BatchNorm on this batch's statistics (as the engine's
    sample mode, whose calibrated statistics are this batch's), the caller's model and its buffers untouched."""
    net = copy.deepcopy(model).train()
    _, lin = classifier_of(net)
    seen: dict[str, Tensor] = {}

    def keep_input(mod: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:  # returns None: output unchanged
        seen["h"] = inp[0].detach()

    hook = lin.register_forward_hook(keep_input)
    try:
        with torch.no_grad():
            z = net(x)
    finally:
        hook.remove()
    return z.detach(), seen["h"]


def anatomy(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> Anatomy:
    """The :class:`Anatomy` of ``model`` on ``batches`` (each value a mean over batches)."""
    from initscore.scores import gradcosine

    name, _ = classifier_of(model)
    weight = f"{name}.weight" if name else "weight"
    rows = []
    for x, y in batches:
        s = gradcosine(model, (x, y), mode="sample")
        layer = next((lay for lay in s.layers if lay.name == weight), None)
        if layer is None:
            raise OptionsError(f"gc_anatomy: the classifier weight {weight!r} is not a trainable parameter")
        z, h = _forward_parts(model, x)
        # e in the network's own precision, as the engine's per-sample gradients: in float32 a saturated sample
        # (p_y rounds to 1) has e = 0 exactly, no direction; a float64 softmax would keep a tiny vector with one
        p = z.softmax(1)
        e = (p - nn.functional.one_hot(y, p.shape[1]).to(p.dtype)).double()
        p = p.double()
        eu = nn.functional.normalize(e, dim=1)
        hu = nn.functional.normalize(h.double().flatten(1), dim=1)
        pred = p.argmax(1)
        k = int(torch.mode(pred).values)
        rows.append({
            "gc": s.gc, "gn": s.gn, "classifier_gc": layer.gc,
            "product": float(((eu @ eu.T) * (hu @ hu.T)).mean()),
            "error_cosine": pair_cosine_mean(e), "feature_cosine": pair_cosine_mean(h),
            "max_prob": float(p.max(1).values.mean()), "modal_share": float((pred == k).double().mean()),
            "ceiling": constant_prediction_ceiling(y, k, p.shape[1]),
        })
    if not rows:
        raise OptionsError("gc_anatomy needs at least one held-out batch")
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
    return Anatomy(classifier=weight, **mean)


def scaled_copy(model: nn.Module, factor: float, tensors: Sequence[str] | None = None) -> nn.Module:
    """A copy of ``model`` with the parameter tensors matching ``tensors`` (shell patterns; None = every
    weight tensor, i.e. every parameter whose name ends in 'weight') multiplied by ``factor``."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in m.named_parameters():
            hit = n.endswith("weight") if tensors is None else any(fnmatch.fnmatchcase(n, t) for t in tensors)
            if hit:
                p.mul_(factor)
    return m


def scale_sweep(model: nn.Module, batches: list[tuple[Tensor, Tensor]], factors: Sequence[float],
                tensors: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """:func:`anatomy` of :func:`scaled_copy` (model, c, tensors) for every c in ``factors``."""
    return [{"factor": c, **anatomy(scaled_copy(model, c, tensors), batches).to_dict()} for c in factors]


COLUMNS = ("gc", "gn", "classifier_gc", "product", "error_cosine", "feature_cosine", "max_prob", "modal_share",
           "ceiling")


def row_line(label: str, d: dict[str, Any]) -> str:
    return f"| {label} | " + " | ".join(f"{d[c]:.4g}" if c == "gn" else f"{d[c]:.4f}" for c in COLUMNS) + " |"


def from_results(results: dict[str, Any], methods: Sequence[str] = ("kaiming", "nio"),
                 log: Log = print) -> list[dict[str, Any]]:
    """:func:`anatomy` of the initial (and rectified) networks of a results.json of ``initscore experiment``:
    each run's network rebuilt from its spec and seed, its recorded scales applied, on the config's held-out
    batches (the same ones the run scored)."""
    from initscore import models
    from initscore.experiments.config import parse_config
    from initscore.experiments.runner import load_splits

    cfg = parse_config(results["config"])
    splits = load_splits(cfg.data, torch.device("cpu"))
    out = []
    for run in results["runs"]:
        if run["method"] not in methods or "init" not in run:
            continue
        torch.manual_seed(run["seed"])
        net = models.build(run["spec"])
        with torch.no_grad():
            for n, p in net.named_parameters():
                p.mul_(float(run["init"]["scales"].get(n, 1.0)))
        rec = {"model": run["model"], "method": run["method"], "seed": run["seed"],
               **anatomy(net, splits.heldout).to_dict()}
        if abs(rec["gc"] - run["init"]["exact_after"]["gc"]) > 1e-4 * max(1.0, abs(rec["gc"])):
            raise OptionsError(f"{run['model']} {run['method']} seed {run['seed']}: rebuilt network's held-out GC "
                               f"{rec['gc']:.6f} != the recorded {run['init']['exact_after']['gc']:.6f}")
        log(row_line(f"{run['model']}, {run['seed']} | {run['method']}", rec))
        out.append(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    from initscore import models, nio
    from initscore.experiments.config import DataConfig
    from research.nobn_study import PRESET_NIO
    from initscore.experiments.runner import load_splits

    ap = argparse.ArgumentParser(prog="python -m research.gc_anatomy", description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["sweep", "nio", "report"])
    ap.add_argument("results", nargs="?", help="report: a run folder or its results.json")
    ap.add_argument("--methods", default="kaiming,nio", help="report: methods to show")
    ap.add_argument("--seeds", default="10,11", help="network seeds")
    ap.add_argument("--data-seed", type=int, default=1, help="data seed (1 = tuning data, 0 = the reported run's)")
    ap.add_argument("--pool", type=int, default=2000, help="training pool size (nio: the rectification's pool)")
    ap.add_argument("--bn", action="store_true", help="ResNet-20 with BatchNorm (default: without)")
    ap.add_argument("--factors", default="0.9,1,1.1,1.25", help="sweep: global scale factors")
    ap.add_argument("--fc-factors", default="1.5,2,3", help="sweep: classifier-only scale factors")
    ap.add_argument("--out", help="write the records as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    if a.what == "report":
        from initscore.experiments.runner import load_result

        if not a.results:
            raise SystemExit("report needs a run folder (or its results.json)")
        print("| model, seed | method | " + " | ".join(COLUMNS) + " |")
        print("|---|---|" + "---|" * len(COLUMNS))
        recs = from_results(load_result(a.results), a.methods.split(","), log=lambda s: print(s, flush=True))
        if a.out:
            with open(a.out, "w") as fh:
                json.dump(recs, fh, indent=1)
        return 0
    spec = {"arch": "resnet20", "args": {"bn": a.bn}}
    splits = load_splits(DataConfig(train_size=a.pool, test_size=1, heldout_size=128, heldout_batch_size=64,
                                    seed=a.data_seed), torch.device("cpu"))
    print("| network, seed | setting | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    out: list[dict[str, Any]] = []
    for seed in (int(s) for s in a.seeds.split(",")):
        torch.manual_seed(seed)
        base = models.build(spec)
        label = f"{'BN' if a.bn else 'no-BN'}, {seed}"
        if a.what == "sweep":
            fc = classifier_of(base)[0] + ".weight"
            recs = [("global x" + f, r) for f, r in zip(a.factors.split(","), scale_sweep(
                base, splits.heldout, [float(f) for f in a.factors.split(",")]))]
            recs += [(f"{fc} x" + f, r) for f, r in zip(a.fc_factors.split(","), scale_sweep(
                base, splits.heldout, [float(f) for f in a.fc_factors.split(",")], [fc]))]
        else:
            rect = nio.rectify(base, splits.train, PRESET_NIO.updated(iters=20, lr=0.1, seed=seed))
            m = copy.deepcopy(base)
            nio.apply(m, rect)
            recs = [("Kaiming", anatomy(base, splits.heldout).to_dict()),
                    ("NIO (cpu preset)", anatomy(m, splits.heldout).to_dict())]
        for name, r in recs:
            print(row_line(f"{label} | {name}", r), flush=True)
            out.append({"seed": seed, "bn": a.bn, "setting": name, **r})
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
