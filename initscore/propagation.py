"""Signal-propagation report at initialization for any torch model.

For one batch (x, y) it records, per selected module in order of first execution:

- forward_var: the variance of all entries of the module's output, Var[h_l]
  (population variance over batch and features, accumulated in float64);
- forward_mean_sq: E[h_l^2] (the "q" of mean-field signal propagation,
  Poole et al. 2016; Schoenholz et al. 2017);
- backward_var: the variance of all entries of dLoss/dh_l, the gradient of the loss
  w.r.t. that output (the backward signal), with Loss = SUM over samples of the
  cross-entropy (so the per-sample gradient scale does not depend on the batch size),
  or 0.5 * sum(output^2) when no targets are given or the output is not (B, classes).

and the linear CKA (Kornblith et al., ICML 2019, Eq. for linear kernels) between the
flattened input X (B x d_in) and the flattened network output Y (B x d_out):

    CKA(X, Y) = <H K H, H L H>_F / (||H K H||_F ||H L H||_F),  K = X X^T, L = Y Y^T, H = I - 11^T / B,

equivalently ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F) for column-centred X_c, Y_c.

Modules: level="leaf" selects every leaf module with its own parameters (Linear, Conv,
norm layers, LDLT layers); level="block" selects, outermost first, children of
nn.Sequential / nn.ModuleList that hold parameters (e.g. ResNet basic blocks), and
parameterized leaves not inside one. A module called several times is reported at its
first call. The caller's model is never touched: the report runs on a deep copy (so
BatchNorm running statistics and .grad of the original are unchanged), in the same
train/eval mode as the original.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from initscore import mode_caches
from initscore.errors import DataError, NonFiniteError, OptionsError


@dataclass(frozen=True)
class LayerStats:
    name: str
    depth: int  # 0-based order of first execution
    kind: str  # module class name
    shape: tuple[int, ...]  # output shape
    forward_var: float
    forward_mean_sq: float
    backward_var: float | None  # None when the output does not reach the loss


@dataclass(frozen=True)
class PropagationReport:
    layers: tuple[LayerStats, ...]
    input_output_cka: float | None
    input_var: float
    output_var: float
    loss: float
    loss_kind: str
    batch_size: int
    level: str
    training_mode: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [dict(asdict(layer), shape=list(layer.shape)) for layer in self.layers]
        return d

    def to_result(self, arch: str, *, plot_sha256: str | None = None, seconds: float = 0.0):
        """The contract's PropagationResult (pydantic, JSON-able)."""
        from initscore.contract import LayerPropagation, PropagationResult

        return PropagationResult(
            arch=arch,
            layers=[LayerPropagation(name=l.name, depth=l.depth, forward_var=l.forward_var,
                                     backward_var=l.backward_var, kind=l.kind) for l in self.layers],
            input_output_cka=self.input_output_cka,
            input_var=self.input_var,
            output_var=self.output_var,
            loss=self.loss,
            loss_kind=self.loss_kind,
            plot_sha256=plot_sha256,
            seconds=seconds,
        )


# ---------------------------------------------------------------- CKA
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Linear CKA between row-aligned representations (B x ...), float64. None if undefined (B < 2 or constant)."""
    x = x.detach().reshape(x.shape[0], -1).double()
    y = y.detach().reshape(y.shape[0], -1).double()
    if x.shape[0] != y.shape[0]:
        raise OptionsError("CKA needs the same number of rows in both representations")
    if x.shape[0] < 2:
        return None
    xc = x - x.mean(0, keepdim=True)
    yc = y - y.mean(0, keepdim=True)
    b, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
    if b * b * (d1 + d2) <= b * (d1 * d2 + d1 * d1 + d2 * d2):  # sample space: centred Grams H K H, H L H
        k = xc @ xc.T
        l = yc @ yc.T
        num, den = (k * l).sum(), k.norm() * l.norm()
    else:  # feature space, same value: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)
        num = (yc.T @ xc).pow(2).sum()
        den = (xc.T @ xc).norm() * (yc.T @ yc).norm()
    if not torch.isfinite(den) or float(den) == 0.0:
        return None
    return float(num / den)


# ---------------------------------------------------------------- module selection
def _select(model: nn.Module, level: str) -> dict[str, nn.Module]:
    if level == "leaf":
        return {
            (name or "(model)"): mod for name, mod in model.named_modules()
            if not list(mod.children()) and any(True for _ in mod.parameters(recurse=False))
        }
    if level != "block":
        raise OptionsError(f"level must be 'leaf' or 'block', got {level!r}")
    chosen: dict[str, nn.Module] = {}

    def visit(prefix: str, mod: nn.Module, parent_is_container: bool) -> None:
        for cname, child in mod.named_children():
            name = f"{prefix}.{cname}" if prefix else cname
            has_params = any(True for _ in child.parameters())
            is_leaf = not list(child.children())
            if not has_params:
                continue
            if is_leaf or (parent_is_container and not isinstance(child, (nn.Sequential, nn.ModuleList))):
                chosen[name] = child
            else:
                visit(name, child, isinstance(child, (nn.Sequential, nn.ModuleList)))

    if not list(model.children()) and any(True for _ in model.parameters(recurse=False)):
        return {"(model)": model}
    visit("", model, isinstance(model, (nn.Sequential, nn.ModuleList)))
    return chosen


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


# ---------------------------------------------------------------- the report
def report(model: nn.Module, batch: Any, *, seed: int = 0, level: str = "leaf") -> PropagationReport:
    """Per-layer forward/backward variance and input-output CKA of `model` on `batch` (see module docstring).

    batch: (x, y) tensors, or x alone. `seed` seeds torch for any randomness in the
    forward pass (dropout, stochastic depth). Never mutates `model`.
    """
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise DataError("batch must be (inputs, targets) or an inputs tensor")
        x, y = batch
    else:
        x, y = batch, None
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] < 1:
        raise DataError("inputs must be a tensor of shape (batch, ...) with at least one sample")
    if not torch.is_floating_point(x):
        raise DataError(f"inputs must be floating point, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise DataError("inputs contain NaN or inf")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape[0] != x.shape[0]):
        raise DataError("targets must be a tensor with one entry per input sample")

    net = mode_caches.deepcopy(model)
    net.zero_grad(set_to_none=True)
    selected = _select(net, level)
    if not selected:
        raise OptionsError(f"the model has no modules with parameters to report at level {level!r}")
    names = {id(mod): name for name, mod in selected.items()}
    order: list[str] = []
    fwd: dict[str, tuple[str, tuple[int, ...], float, float]] = {}
    bwd: dict[str, float] = {}
    handles = []

    def make_hook(name: str):
        def hook(mod: nn.Module, inputs: Any, out: Any) -> None:
            if name in fwd:
                return
            t = _first_tensor(out)
            if t is None or not torch.is_floating_point(t):
                return
            td = t.detach().double()
            var = float(td.var(unbiased=False)) if td.numel() > 0 else 0.0
            msq = float(td.pow(2).mean()) if td.numel() > 0 else 0.0
            if not (math.isfinite(var) and math.isfinite(msq)):
                raise NonFiniteError(f"forward activation of {name!r} is not finite (the signal overflowed)", tensor=name)
            fwd[name] = (type(mod).__name__, tuple(t.shape), var, msq)
            order.append(name)
            if t.requires_grad:
                def ghook(g: torch.Tensor, name: str = name) -> None:
                    gd = g.detach().double()
                    bwd[name] = float(gd.var(unbiased=False)) if gd.numel() else 0.0
                t.register_hook(ghook)
        return hook

    try:
        for name, mod in selected.items():
            handles.append(mod.register_forward_hook(make_hook(name)))
        xin = x.detach().clone()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.enable_grad():
                out = net(xin)
                out_t = _first_tensor(out)
                if out_t is None:
                    raise OptionsError("the model's forward did not return a tensor")
                if not torch.isfinite(out_t).all():
                    raise NonFiniteError("the network output is not finite")
                if (y is not None and out_t.ndim == 2 and y.ndim == 1 and not torch.is_floating_point(y)
                        and int(y.min()) >= 0 and int(y.max()) < out_t.shape[1]):
                    loss = nn.functional.cross_entropy(out_t.double(), y, reduction="sum")
                    loss_kind = "cross_entropy_sum"
                else:
                    loss = 0.5 * out_t.double().pow(2).sum()
                    loss_kind = "half_sum_sq"
                if out_t.requires_grad:
                    loss.backward()
    finally:
        for h in handles:
            h.remove()
    layers = []
    for depth, name in enumerate(order):
        kind, shape, var, msq = fwd[name]
        b = bwd.get(name)
        if b is not None and not math.isfinite(b):
            raise NonFiniteError(f"backward gradient at {name!r} is not finite", tensor=name)
        layers.append(LayerStats(name=name, depth=depth, kind=kind, shape=shape, forward_var=var,
                                 forward_mean_sq=msq, backward_var=b))
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        raise NonFiniteError("the loss is not finite")
    return PropagationReport(
        layers=tuple(layers),
        input_output_cka=linear_cka(x, out_t),
        input_var=float(x.detach().double().var(unbiased=False)),
        output_var=float(out_t.detach().double().var(unbiased=False)),
        loss=loss_value,
        loss_kind=loss_kind,
        batch_size=int(x.shape[0]),
        level=level,
        training_mode=bool(model.training),
    )


# ---------------------------------------------------------------- plot
def plot_bytes(report: PropagationReport, *, title: str | None = None) -> bytes:
    """PNG of forward and backward variance by depth (log scale), as bytes (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    depth = [l.depth for l in report.layers]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    fv = [max(l.forward_var, 1e-300) for l in report.layers]
    ax.semilogy(depth, fv, "o-", ms=3, label="forward Var[h_l]")
    bpts = [(l.depth, l.backward_var) for l in report.layers if l.backward_var is not None and l.backward_var > 0]
    if bpts:
        ax.semilogy([d for d, _ in bpts], [v for _, v in bpts], "s-", ms=3, label="backward Var[dL/dh_l]")
    ax.set_xlabel(f"depth (module index, level={report.level})")
    ax.set_ylabel("variance (log scale)")
    cka = "n/a" if report.input_output_cka is None else f"{report.input_output_cka:.3f}"
    ax.set_title(title or f"signal propagation, batch {report.batch_size}, input-output CKA {cka}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def plot(report: PropagationReport, path: str, *, title: str | None = None) -> str:
    """Write the PNG to `path`; returns its sha256."""
    data = plot_bytes(report, title=title)
    with open(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def format_table(report: Any) -> str:
    """Plain-text table: depth, name, kind, forward var, backward var, then the input/output summary.

    report: a PropagationReport or the contract's PropagationResult (fields it lacks print as "-")."""
    def g(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = [f"{'depth':>5}  {'layer':<28} {'kind':<20} {'fwd var':>11} {'bwd var':>11}"]
    for l in report.layers:
        kind = (l.kind or "-")[:20]
        lines.append(f"{l.depth:>5}  {l.name[:28]:<28} {kind:<20} {l.forward_var:11.4g} {g(l.backward_var, '11.4g'):>11}")
    cka = "n/a" if report.input_output_cka is None else f"{report.input_output_cka:.4f}"
    lines.append(f"input var {g(report.input_var, '.4g')}  output var {g(report.output_var, '.4g')}  "
                 f"input-output linear CKA {cka}  loss ({report.loss_kind or '-'}) {g(report.loss, '.4g')}")
    return "\n".join(lines)


def plot_compare(reports: dict[str, PropagationReport], path: str, *, title: str = "") -> str:
    """Forward (solid) and backward (dashed) variance by depth for several labelled reports; returns sha256."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for label, rep in reports.items():
        cka = "n/a" if rep.input_output_cka is None else f"{rep.input_output_cka:.3f}"
        a1.semilogy([l.depth for l in rep.layers], [max(l.forward_var, 1e-300) for l in rep.layers], "o-", ms=3,
                    label=f"{label} (CKA {cka})")
        pts = [(l.depth, l.backward_var) for l in rep.layers if l.backward_var]
        a2.semilogy([d for d, _ in pts], [v for _, v in pts], "s--", ms=3, label=label)
    a1.set_title("forward Var[h_l]")
    a2.set_title("backward Var[dL/dh_l]")
    for ax in (a1, a2):
        ax.set_xlabel("depth (module index)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    with open(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()
