"""`initscore propagation` (signal-propagation report) and `initscore lipschitz ...` (LDLT layer theory).

Examples:
  initscore propagation --arch resnet20 --args '{"bn": false}' --data cifar10 --plot out.png
  initscore propagation --arch mlp --data synthetic --shape 3,32,32 --json
  initscore lipschitz variance --m 64 --n 64 --init-scale 1 --alpha 1
  initscore lipschitz recommend-scale --target 0.9 --m 64 --n 64 --alpha 1
  initscore lipschitz sweep --m 16 --n 16 --plot series.png
  initscore lipschitz moments --k 4
"""
from __future__ import annotations

import json
import math
from typing import Any, Optional

import typer

from initscore.errors import DataError, OptionsError, SpecError


def _parse_args(text: str) -> dict[str, Any]:
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"--args must be a JSON object, e.g. '{{\"bn\": false}}' ({exc.msg})") from None
    if not isinstance(args, dict):
        raise SpecError("--args must be a JSON object, e.g. '{\"bn\": false}'")
    return args


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise DataError(f"--shape must be comma-separated integers like 3,32,32, got {text!r}") from None
    if not shape:
        raise DataError("--shape must not be empty")
    return shape


def _positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise OptionsError(f"--{name} must be a positive finite number, got {value!r}")
    return value


def _dims(m: int, n: int) -> None:
    if m < 1 or n < 1:
        raise OptionsError(f"--m and --n must be >= 1, got m={m}, n={n}")


def _propagation_request(arch: str, args: str, data: str, root: str | None, split: str, batch_size: int, seed: int,
                         init_seed: int, shape: str | None, level: str, eval_mode: bool, plot: bool
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The contract PropagationRequest of the verb (what ``initscore submit`` would send), validated torch-free,
    and the architecture's full arguments (defaults filled in).

    Synthetic data takes the model's input shape (an MLP's ``(in_features,)``) unless --shape is given; other
    kinds read --root (default: the shared copy) limited to one batch."""
    from initscore.models import validate_spec

    spec = {"arch": arch, "args": _parse_args(args)}
    entry, full_args = validate_spec(spec)
    ref: dict[str, Any] = {"kind": data, "split": split, "batch_size": batch_size, "seed": seed}
    if data == "synthetic":
        shp = _parse_shape(shape) or entry.input_shape
        if shape is None and "in_features" in full_args and (
                shp is None or math.prod(shp) != int(full_args["in_features"])):
            shp = (int(full_args["in_features"]),)
        ref["shape"] = None if shp is None else list(shp)
        ref["num_classes"] = int(full_args.get("num_classes", 10))
    else:
        if root is None:
            from initscore.dataref import default_root

            root = default_root(data)
            if root is None:
                raise DataError(f"data kind {data!r} needs --root (no default copy found)")
        ref["root"] = root
        ref["limit"] = batch_size
    options = {"seed": init_seed, "level": level, "train_mode": not eval_mode, "plot": plot}
    from initscore.cli.engine_cmds import _request

    return _request("propagation", spec, {k: v for k, v in ref.items() if v is not None}, options), full_args


def propagation(
    arch: str = typer.Option(..., help="registered architecture, e.g. resnet20"),
    args: str = typer.Option("{}", help="JSON object of architecture arguments"),
    data: str = typer.Option("synthetic", help="data kind: synthetic, cifar10, mnist, ... (contract DataRef.kind)"),
    root: Optional[str] = typer.Option(None, help="data root (default for cifar10: ../shared/data/cifar10_jpeg)"),
    split: str = typer.Option("train", help="train or test"),
    batch_size: int = typer.Option(64, help="samples in the batch"),
    seed: int = typer.Option(0, help="which samples / synthetic data (data.seed)"),
    init_seed: int = typer.Option(0, help="torch seed for the initial weights and the forward pass (options.seed)"),
    shape: Optional[str] = typer.Option(None, help="synthetic sample shape, e.g. 3,32,32 (default: the model's)"),
    level: str = typer.Option("leaf", help="leaf (every parameterized leaf) or block (residual blocks)"),
    eval_mode: bool = typer.Option(False, "--eval", help="run the model in eval mode (default: train mode)"),
    plot: Optional[str] = typer.Option(None, help="write a PNG of variance by depth here"),
    as_json: bool = typer.Option(False, "--json", help="print the contract PropagationResult as JSON"),
) -> None:
    """Per-layer forward/backward variance at initialization and input-output linear CKA.

    Runs the propagation job the service would run (initscore.jobs.run_job) on the same request."""
    req, full_args = _propagation_request(arch, args, data, root, split, batch_size, seed, init_seed, shape, level,
                               eval_mode, plot is not None)
    from initscore.jobs import run_job

    res, _, png = run_job(req)
    if plot and png is not None:
        with open(plot, "wb") as fh:
            fh.write(png)
    if as_json:
        typer.echo(res.model_dump_json(indent=2))
        return
    from initscore.propagation import format_table

    typer.echo(f"{arch} {json.dumps(full_args, sort_keys=True)} on {data} ({req['data']['batch_size']} samples, "
               f"{level} level)")
    typer.echo(format_table(res))
    if plot:
        typer.echo(f"plot: {plot}")


lipschitz_app = typer.Typer(no_args_is_help=True, help="LDLT L-Lipschitz layer: Wishart moments, output variance, init scale.")


@lipschitz_app.command("moments")
def moments(k: int = typer.Option(10, help="largest order"),
            m: Optional[int] = typer.Option(None, help="evaluate at this m"),
            n: Optional[int] = typer.Option(None, help="evaluate at this n"),
            sigma2: float = typer.Option(1.0, help="entry variance sigma^2")) -> None:
    """E tr(S^k), S ~ W_m(n, sigma^2 I) (real): exact polynomials in (m, n), or values."""
    from initscore.wishart import MAX_K, expected_trace_power, format_polynomial, trace_moment_polynomial

    if not 1 <= k <= MAX_K:
        raise OptionsError(f"--k must be in 1..{MAX_K}, got {k}")
    for j in range(1, k + 1):
        if m is not None and n is not None:
            _dims(m, n)
            typer.echo(f"E tr S^{j} = {expected_trace_power(j, m, n, sigma2):.10g}")
        else:
            typer.echo(f"E tr S^{j} / sigma^{2 * j} = {format_polynomial(trace_moment_polynomial(j))}")


@lipschitz_app.command("variance")
def variance(m: int = typer.Option(64, help="output width (rows of W0)"),
             n: int = typer.Option(64, help="input width (columns of W0)"),
             init_scale: float = typer.Option(1.0, help="sigma = init_scale / sqrt(n); 1 = He"),
             alpha: float = typer.Option(1.0), lipschitz: float = typer.Option(1.0),
             samples: int = typer.Option(2000, help="Monte Carlo draws of W0"),
             layers: int = typer.Option(200, help="Monte Carlo draws of the torch layer (0 to skip)"),
             seed: int = typer.Option(0),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Marginal output variance of one LDLT layer: Monte Carlo (eigenvalues and the torch layer) vs the series."""
    from initscore.wishart import series_ratio, variance_exact, variance_mc, variance_series, variance_theory

    _dims(m, n)
    _positive("init-scale", init_scale)
    _positive("alpha", alpha)
    _positive("lipschitz", lipschitz)
    s2 = (init_scale / math.sqrt(n)) ** 2
    mc, se = variance_mc(m, n, s2, alpha, lipschitz, samples=samples, seed=seed)
    out: dict[str, Any] = {"m": m, "n": n, "init_scale": init_scale, "sigma2": s2, "alpha": alpha,
                           "lipschitz": lipschitz, "mc": mc, "mc_se": se,
                           "series_k10": variance_series(m, n, s2, alpha, lipschitz),
                           "series_ratio": series_ratio(m, n, s2, alpha),
                           "theory": variance_theory(m, n, s2, alpha, lipschitz),
                           "theory_limit": variance_theory(m, n, s2, alpha, lipschitz, order=0),
                           # finite m, n (Pfaffian): min(m, n) even; up to 512 (~1 min there)
                           "exact": variance_exact(m, n, s2, alpha, lipschitz)
                           if min(m, n) % 2 == 0 and min(m, n) <= 512 else None}
    if layers > 0:
        from initscore.lipschitz import layer_variance_mc

        lm, lse = layer_variance_mc(m, n, init_scale, alpha, lipschitz, layers=layers, seed=seed)
        out.update(layer_mc=lm, layer_mc_se=lse)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"m={m} n={n} sigma={init_scale:g}/sqrt(n) alpha={alpha:g} L={lipschitz:g}")
    typer.echo(f"  Monte Carlo over W0 (exact in x): {mc:.4f} +- {se:.4f}")
    if layers > 0:
        typer.echo(f"  Monte Carlo of the torch layer:    {out['layer_mc']:.4f} +- {out['layer_mc_se']:.4f}")
    ok = "converges" if out["series_ratio"] < 1 else "DIVERGES (sigma^2 (sqrt m + sqrt n)^2 / alpha >= 1)"
    typer.echo(f"  series, K=10:                      {out['series_k10']:.6g}   [ratio {out['series_ratio']:.3g}: {ok}]")
    typer.echo(f"  theory (Marchenko-Pastur + 1/m):   {out['theory']:.4f}   (n -> infinity: {out['theory_limit']:.4f})")
    if out["exact"] is not None:
        typer.echo(f"  exact at this m, n (Pfaffian):     {out['exact']:.5f}")


@lipschitz_app.command("recommend-scale")
def recommend(target: float = typer.Option(..., help="target output variance, in (0, lipschitz^2)"),
              m: int = typer.Option(64), n: int = typer.Option(64), alpha: float = typer.Option(1.0),
              lipschitz: float = typer.Option(1.0), method: str = typer.Option("mc", help="mc or series"),
              samples: int = typer.Option(400), seed: int = typer.Option(0),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Solve for the init scale (sigma * sqrt n) that gives the target output variance."""
    from initscore.wishart import recommend_scale

    _dims(m, n)
    rec = recommend_scale(target, m, n, alpha, lipschitz, method=method, samples=samples, seed=seed)
    if as_json:
        typer.echo(json.dumps(rec.to_dict(), indent=2))
    else:
        typer.echo(f"init_scale = {rec.init_scale:.4f}  (sigma = {rec.sigma:.5g}; Var[y] = {rec.variance:.4f} by {rec.method})")


@lipschitz_app.command("sweep")
def sweep(m: int = typer.Option(16), n: int = typer.Option(16), alpha: float = typer.Option(1.0),
          scales: str = typer.Option("0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.8,1,2,4,10",
                                     help="comma-separated init scales (sigma = scale / sqrt n)"),
          samples: int = typer.Option(4000), seed: int = typer.Option(0),
          plot: Optional[str] = typer.Option(None, help="write the series-vs-Monte-Carlo PNG here"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Series (K=10) vs Monte Carlo of the output variance as sigma^2 grows."""
    from initscore.wishart import plot_variance_table, variance_table

    _dims(m, n)
    _positive("alpha", alpha)
    try:
        cs = [float(s) for s in scales.split(",") if s.strip()]
    except ValueError:
        raise OptionsError(f"--scales must be comma-separated numbers, got {scales!r}") from None
    if not cs or any(not (math.isfinite(c) and c > 0) for c in cs):
        raise OptionsError("--scales must be positive numbers")
    rows = variance_table(m, n, alpha, cs, samples=samples, seed=seed)
    if plot:
        plot_variance_table(rows, plot, title=f"LDLT layer output variance, m={m}, n={n}, alpha={alpha:g}")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'scale':>6} {'sigma^2':>10} {'ratio':>8} {'MC':>9} {'+-se':>8} {'series K=10':>13} {'rel err':>9}")
    for r in rows:
        typer.echo(f"{r['init_scale']:6g} {r['sigma2']:10.4g} {r['ratio']:8.3g} {r['mc']:9.4f} {r['mc_se']:8.4f} "
                   f"{r['series']:13.6g} {r['rel_err']:9.2g}")
    if plot:
        typer.echo(f"plot: {plot}")


def register(app: typer.Typer) -> None:
    app.command("propagation")(propagation)
    app.add_typer(lipschitz_app, name="lipschitz")
