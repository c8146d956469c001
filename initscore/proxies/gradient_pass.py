"""The gradient-based proxies that share one forward/backward pass.

grad_norm, snip, grasp, fisher, jacob_cov and naswot all use the same forward of
the batch through the network in training mode (BatchNorm with batch statistics),
exactly as zero-cost-nas ``find_measures`` runs each measure on its own copy; a
single pass gives the same numbers because training-mode BatchNorm outputs do not
depend on running statistics. With one chunk:

1. forward -> logits z, loss L = cross_entropy(z, y) (mean over the batch);
2. g = dL/dW for every Conv/Linear weight W (create_graph when grasp is asked);
   fisher's tensor hooks read dL/d(conv output) during this backward;
3. jacob_cov: J = d(sum z)/dx (per-sample input Jacobians);
4. grasp: Hg = d(sum stopgrad(g) * g)/dW.

With c > 1 chunks (after an out-of-memory) the batch is split as the reference's
``split_data``: gradients are sums of the per-chunk mean losses, and grasp takes a
second pass per chunk.

Definitions (higher = better, sums over Conv/Linear weight tensors W):
  grad_norm = sum_W ||g_W||_2
  snip      = sum_W sum |W * g_W|
  grasp     = sum_W sum -(W * (H g)_W)
  fisher    = sum_layers sum_k fanin_k * 0.5 * mean_n (sum_spatial a_nk * dL/da_nk)^2,
              a = the layer's output (zero-cost-nas broadcasts the channel value over
              the channel's weights, hence the fan-in factor)
  jacob_cov = -sum_i [log(l_i + k) + 1/(l_i + k)], k = 1e-5, l_i the eigenvalues of
              corrcoef(J) (rows = samples)
  naswot    = log det K, K = sum_ReLU c c^T + (1 - c)(1 - c)^T, c_n = 1[ReLU input > 0]
  epe_nas   = initscore.proxies.epe_nas.epe_nas_score(J, y) (the same J as jacob_cov)
  plain     = sum_W sum W * g_W (NASLib plain.py: signed, no absolute value)
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from initscore.errors import NonFiniteError, OptionsError
from initscore.proxies.common import chunk_bounds, finite, private_copy, weight_layers

SHARED = ("grad_norm", "snip", "grasp", "fisher", "jacob_cov", "naswot", "epe_nas", "plain")
_JACOB_K = 1e-5


def jacob_cov_score(jac: np.ndarray) -> float:
    """Mellor et al. score of a (B, D) Jacobian matrix, float64."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(np.asarray(jac, dtype=np.float64))
    if not np.all(np.isfinite(corr)):
        raise NonFiniteError("proxy 'jacob_cov': correlation of input Jacobians is not finite (a sample has a constant Jacobian)")
    eig = np.linalg.eigvalsh(corr)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(-np.sum(np.log(eig + _JACOB_K) + 1.0 / (eig + _JACOB_K)))


def naswot_score(K: np.ndarray) -> float:
    """log|K| of the NASWOT Hamming kernel (float64 slogdet)."""
    sign, logdet = np.linalg.slogdet(np.asarray(K, dtype=np.float64))
    if sign <= 0:
        raise NonFiniteError("proxy 'naswot': the activation-code kernel is singular (identical ReLU codes for two samples)")
    return float(logdet)


def _hamming_kernel(cf: torch.Tensor) -> torch.Tensor:
    """c c^T + (1-c)(1-c)^T of 0/1 codes (B, D) in float64 with ONE matmul: 2 c c^T - s_i - s_j + D, s = row sums.

    Exact: c c^T and s are integer counts, exact in float32 below 2**24 (float64 above).
    """
    if cf.shape[1] >= 1 << 24:
        cf = cf.double()
    cc = (cf @ cf.T).double()
    s = cf.sum(1, dtype=torch.float64)
    return 2.0 * cc - s[:, None] - s[None, :] + float(cf.shape[1])


def shared_gradient_proxies(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Iterable[str], *, chunks: int = 1
) -> tuple[dict[str, float], dict[str, Exception]]:
    """Compute the requested subset of SHARED proxies in one pass; per-proxy errors are returned, not raised."""
    names = [n for n in names if n in SHARED]
    if not names:
        return {}, {}
    want = set(names)
    net = private_copy(model)
    net.train()
    layers = weight_layers(net)
    weights = [m.weight for _, m in layers]
    bounds = chunk_bounds(x.shape[0], chunks)
    single = len(bounds) == 1
    n_grad = 0

    state = {"capture": False}
    fisher_acc: list[torch.Tensor | None] = [None] * len(layers)
    hooks = []
    if "fisher" in want:
        for idx, (_, mod) in enumerate(layers):
            def fwd_hook(module, inp, out, idx=idx):
                if not state["capture"] or not isinstance(out, torch.Tensor) or not out.requires_grad:
                    return
                act = out.detach()

                def grad_hook(grad, act=act, idx=idx):
                    if state["capture"]:
                        g = grad.detach()
                        g_nk = (act * g).sum(dim=tuple(range(2, act.dim()))) if act.dim() > 2 else act * g
                        del_k = g_nk.double().pow(2).mean(0).mul(0.5)
                        fisher_acc[idx] = del_k if fisher_acc[idx] is None else fisher_acc[idx] + del_k
                out.register_hook(grad_hook)
            hooks.append(mod.register_forward_hook(fwd_hook))

    codes_by_chunk: list[list[torch.Tensor]] = []
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    if "naswot" in want:
        relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
        if not relus:
            for h in hooks:
                h.remove()
            raise OptionsError("proxy 'naswot' needs nn.ReLU modules in the model")
        chunk_codes: list[torch.Tensor] = []
        # several ReLUs often read the same tensor (every op on an edge out of one NB201 node): its kernel
        # term is computed once and added once per ReLU (the tensor is held so its id stays unique)

        def relu_hook(module, inp, out):
            if not state["naswot"]:
                return
            t = inp[0]
            if single:
                hit = seen.get(id(t))
                if hit is None:
                    cf = (t.detach() > 0).flatten(1).to(torch.float32)
                    hit = (t, _hamming_kernel(cf))
                    seen[id(t)] = hit
                state["K"] += hit[1]
            else:
                chunk_codes.append((t.detach() > 0).flatten(1).cpu())
        state["K"] = torch.zeros((x.shape[0], x.shape[0]), dtype=torch.float64, device=x.device)
        hooks.extend(r.register_forward_hook(relu_hook) for r in relus)
    state["naswot"] = False

    grads: list[torch.Tensor] = [torch.zeros_like(w) for w in weights]
    hg: list[torch.Tensor] = [torch.zeros_like(w) for w in weights]
    jac_rows: list[torch.Tensor] = []
    try:
        # ---- pass A: loss gradients, fisher, jacobian, naswot codes (and grasp when single)
        need_loss = bool(want & {"grad_norm", "snip", "grasp", "fisher", "plain"})
        need_jac = bool(want & {"jacob_cov", "epe_nas"})
        n_out = 0
        for st, en in bounds:
            xc = x[st:en].detach().clone().requires_grad_(need_jac)
            state["capture"] = "fisher" in want
            state["naswot"] = "naswot" in want
            with torch.set_grad_enabled(need_loss or need_jac):  # naswot alone: a plain no-grad forward
                out = net(xc)
            state["naswot"] = False
            seen.clear()
            n_out = out.shape[-1]
            if not torch.isfinite(out).all():
                raise NonFiniteError("the model's output is NaN/inf on this batch; no data-dependent proxy can be computed")
            if "naswot" in want and not single:
                codes_by_chunk.append(torch.cat(chunk_codes, dim=1))
                chunk_codes.clear()
            grasp_here = single and "grasp" in want
            if need_loss:
                loss = F.cross_entropy(out, y[st:en])
                g = torch.autograd.grad(loss, weights, create_graph=grasp_here, retain_graph=grasp_here or need_jac,
                                        allow_unused=True)
                state["capture"] = False
                g = [torch.zeros_like(w) if gi is None else gi for w, gi in zip(weights, g)]
                for acc, gi in zip(grads, g):
                    acc.add_(gi.detach())
                n_grad += 1
            state["capture"] = False
            if need_jac:
                (j,) = torch.autograd.grad(out.sum(), xc, retain_graph=grasp_here)
                jac_rows.append(j.detach().flatten(1).cpu())
            if grasp_here:
                z = sum((gi.detach() * gi).sum() for gi in g if gi.requires_grad)
                if isinstance(z, torch.Tensor) and z.requires_grad:
                    h = torch.autograd.grad(z, weights, allow_unused=True)
                    for acc, hi in zip(hg, h):
                        if hi is not None:
                            acc.add_(hi.detach())
            if need_loss:
                del loss, g
            del out
        # ---- pass B (chunked grasp only): Hg with the total gradient, per chunk
        if "grasp" in want and not single:
            for st, en in bounds:
                out = net(x[st:en])
                loss = F.cross_entropy(out, y[st:en])
                gf = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
                z = sum((gw * gi).sum() for gw, gi in zip(grads, gf) if gi is not None and gi.requires_grad)
                if isinstance(z, torch.Tensor) and z.requires_grad:
                    h = torch.autograd.grad(z, weights, allow_unused=True)
                    for acc, hi in zip(hg, h):
                        if hi is not None:
                            acc.add_(hi.detach())
                del out, loss, gf, z
    finally:
        for h in hooks:
            h.remove()

    values: dict[str, float] = {}
    errors: dict[str, Exception] = {}

    def put(name: str, fn) -> None:
        if name not in want:
            return
        try:
            values[name] = finite(name, fn())
        except (NonFiniteError, OptionsError) as exc:
            errors[name] = exc

    with torch.no_grad():
        put("grad_norm", lambda: sum(float(g.double().norm()) for g in grads))
        put("snip", lambda: sum(float((w.double() * g.double()).abs().sum()) for w, g in zip(weights, grads)))
        put("grasp", lambda: sum(float(-(w.double() * h.double()).sum()) for w, h in zip(weights, hg)))

        def fisher_total() -> float:
            total = 0.0
            for (_, mod), f in zip(layers, fisher_acc):
                if f is not None:
                    total += float(f.abs().sum()) * math.prod(mod.weight.shape[1:])
            return total
        put("fisher", fisher_total)
        put("jacob_cov", lambda: jacob_cov_score(torch.cat(jac_rows).double().numpy()))
        put("plain", lambda: sum(float((w.double() * g.double()).sum()) for w, g in zip(weights, grads)))
        if "epe_nas" in want:
            from initscore.proxies.epe_nas import epe_nas_score

            put("epe_nas", lambda: epe_nas_score(torch.cat(jac_rows).double().numpy(), y.cpu().numpy(), n_out))

        def naswot_total() -> float:
            if single:
                return naswot_score(state["K"].cpu().numpy())
            codes = torch.cat(codes_by_chunk, dim=0).to(torch.float32)
            return naswot_score(_hamming_kernel(codes).numpy())
        put("naswot", naswot_total)
    del net, grads, hg, jac_rows
    return values, errors
