"""`initscore score`, `initscore rectify`, `initscore demo`: the engine, in-process (no Redis).

Examples:
  initscore score --arch resnet20 --args '{"bn": false}' --data cifar10 --mode sample --layers
  initscore score --arch mlp --data synthetic --batch-size 32 --json
  initscore rectify --arch resnet20 --args '{"bn": false}' --data cifar10 --iters 30 --out r20.safetensors
  initscore demo
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from initscore.cli.options import options_from
from initscore.contract import RectifyOptions, ScoreOptions
from initscore.errors import DataError, InitscoreError, OptionsError, SpecError

DEMO_OUT = Path("runs/demo/resnet20_nio.safetensors")
DEMO_ITERS = 25
DEMO_BATCH = 64
DEMO_LR = 0.01  # the API default 0.1 makes GN of the no-BN ResNet-20 jump 4x in one step (docs/engine.md)


# ----------------------------------------------------------------- helpers
def _spec(arch: str, args: str) -> dict[str, Any]:
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        raise SpecError(f"--args must be a JSON object, e.g. '{{\"bn\": false}}' ({exc.msg})") from None
    if not isinstance(parsed, dict):
        raise SpecError("--args must be a JSON object")
    from initscore.models import validate_spec

    validate_spec({"arch": arch, "args": parsed})
    return {"arch": arch, "args": parsed}


def _data_ref(spec: dict[str, Any], kind: str, root: str | None, split: str, batch_size: int, seed: int,
              limit: int | None) -> dict[str, Any]:
    from initscore.dataref import default_root
    from initscore.models import validate_spec

    entry, full = validate_spec(spec)
    ref: dict[str, Any] = {"kind": kind, "split": split, "batch_size": batch_size, "seed": seed}
    if kind == "synthetic":
        shape = tuple(entry.input_shape or (3, 32, 32))
        if "in_features" in full and math.prod(shape) != int(full["in_features"]):
            shape = (int(full["in_features"]),)
        ref["shape"] = list(shape)
        ref["num_classes"] = int(full.get("num_classes", 10))
        ref["limit"] = limit
    else:
        if root is None:
            root = default_root(kind)
            if root is None:
                raise DataError(f"data kind {kind!r} needs --root (no default copy found)")
        ref["root"] = root
        ref["limit"] = limit
    return {k: v for k, v in ref.items() if v is not None}


def _load(ref: dict[str, Any]):
    from initscore import data as data_mod
    from initscore.contract import DataRef

    try:
        dref = DataRef(**ref)
    except InitscoreError:
        raise
    except Exception as exc:  # pydantic ValidationError -> one line
        errs = getattr(exc, "errors", lambda: [])()
        msg = errs[0].get("msg") if errs else str(exc).splitlines()[0]
        raise DataError(f"bad data reference: {msg}") from None
    return data_mod.load(dref)


def _build(spec: dict[str, Any], init_seed: int):
    import torch

    from initscore.models import build

    torch.manual_seed(init_seed)
    return build(spec)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def _scores_table(title: str, rows: list[tuple[str, Any]]):
    from rich.table import Table

    t = Table(title=title)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    return t


def _layers_table(layers):
    from rich.table import Table

    t = Table(title="per parameter tensor (paper Fig. 3)")
    for c in ("tensor", "numel", "gc", "gn", "max/min norm"):
        t.add_column(c, justify="left" if c == "tensor" else "right")
    for layer in layers:
        ratio = "-" if layer.norm_ratio is None else f"{layer.norm_ratio:.4g}"
        t.add_row(layer.name, str(layer.numel), f"{layer.gc:.4g}", f"{layer.gn:.4g}", ratio)
    return t


def _key_values(pairs: list[str] | None) -> dict[str, Any]:
    """``--opt KEY=VALUE`` pairs as a dict: a value that parses as JSON is that value, else the string. Every job
    option of the contract is reachable this way, including ones without a flag of their own."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionsError(f"--opt takes KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _request(kind: str, spec: dict[str, Any], ref: dict[str, Any], options: dict[str, Any], **extra: Any
             ) -> dict[str, Any]:
    """The contract request of this verb (what ``initscore submit`` would send), validated torch-free."""
    from pydantic import TypeAdapter, ValidationError

    from initscore.contract import JobRequest

    options = {k: v for k, v in options.items() if v is not None}  # None: the engine's default (by profile)
    try:
        req = TypeAdapter(JobRequest).validate_python({"kind": kind, "model": spec, "data": ref, "options": options,
                                                       **extra})
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(p) for p in e["loc"] if p != kind)
        raise OptionsError(f"{loc}: {e['msg']}") from None
    return req.model_dump(mode="json")


@contextlib.contextmanager
def _progress_bar(label: str) -> Iterator[Callable[[int, int, dict[str, Any]], None]]:
    """A progress callback drawing a rich bar on stderr, opened at the first iteration (so an options error
    before it prints one clean line)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    state: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:

        def progress(i: int, total: int, m: dict[str, Any]) -> None:
            if "bar" not in state:
                bar = stack.enter_context(Progress(
                    TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=_console(stderr=True)))
                state["bar"], state["task"] = bar, bar.add_task(label, total=total, info="")
            info = f"gc {m['gc']:.4f} gn {m['gn']:.4g} g_max {m['g_max']:.4g}{' [bound]' if m['constrained'] else ''}"
            state["bar"].update(state["task"], completed=i, info=info)

        yield progress


def _run(request: dict[str, Any], *, quiet: bool = True, label: str = ""):
    """``initscore.jobs.run_job`` -- the service's own driver -- with a progress bar for rectify jobs."""
    from initscore.jobs import run_job

    if quiet or request["kind"] != "rectify":
        return run_job(request)
    with _progress_bar(label) as progress:
        return run_job(request, progress=progress)


def _heldout_batches(td, n_batches: int, batch_size: int, seed: int):
    if n_batches == 0:
        return td, []
    n = n_batches * batch_size
    if n + batch_size > len(td):
        raise OptionsError(f"{len(td)} samples are too few for {n_batches} held-out batches of {batch_size} "
                           "plus training batches; raise --limit or lower --heldout-batches/--batch-size")
    train, held = td.split(n, seed)
    return train, [(held.x[i * batch_size:(i + 1) * batch_size], held.y[i * batch_size:(i + 1) * batch_size])
                   for i in range(n_batches)]


# ------------------------------------------------------------------- score
OPT_HELP = ("any job option as KEY=VALUE (JSON value, else a string), e.g. -o gn_mul=2; repeatable; wins over the "
            "flags")


@options_from(ScoreOptions, flags={"split": "--sub-batch-split", "seed": "--init-seed"})
def score_cmd(
    arch: str = typer.Option(..., "--arch", help="registered architecture (initscore proxies --list / models)"),
    args: str = typer.Option("{}", "--args", help="architecture arguments as a JSON object"),
    data: str = typer.Option("synthetic", "--data", help="cifar10|cifar100|mnist|fashion-mnist|imagefolder|tensors|synthetic"),
    root: Optional[str] = typer.Option(None, "--root", help="dataset directory or file"),
    split: str = typer.Option("train", "--split"),
    limit: Optional[int] = typer.Option(None, "--limit", help="use a seeded subset of this many samples"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed", help="which samples"),
    layers: bool = typer.Option(False, "--layers", help="print the per-tensor breakdown"),
    as_json: bool = typer.Option(False, "--json", help="print a ScoreResult JSON object"),
    opt: Optional[list[str]] = typer.Option(None, "--opt", "-o", help=OPT_HELP),
    options: dict[str, Any] | None = None,
) -> None:
    """GradCosine and gradient norm of a freshly initialized architecture on one batch."""
    spec = _spec(arch, args)  # torch-free: a typo answers before torch is imported
    ref = _data_ref(spec, data, root, split, batch_size, seed, limit)
    request = _request("score", spec, ref, {**(options or {}), **_key_values(opt)})
    result, _, _ = _run(request)
    if not layers:
        result = result.model_copy(update={"layers": []})
    if as_json:
        typer.echo(result.model_dump_json())
        return
    con = _console()
    con.print(_scores_table(f"{arch} on {data}, B={result.n if result.mode == 'sample' else batch_size}", [
        ("GradCosine (gc)", result.gc), ("GradNorm (gn)", result.gn), ("g_max", result.g_max), ("g_min", result.g_min),
        ("n", result.n), ("mode", result.mode), ("bn", result.bn or "no BN"), ("seconds", result.seconds)]))
    if layers:
        con.print(_layers_table(result.layers))


# ----------------------------------------------------------------- rectify
def apply_nio_preset(ctx: typer.Context, name: str, arch: str, spec_args: dict[str, Any], options: dict[str, Any],
                     batch_size: int) -> tuple[dict[str, Any], int]:
    """(options, batch_size) with the preset's settings in place of every one NOT given on the command line
    (an explicit flag wins)."""
    from initscore.experiments.config import nio_preset

    p = nio_preset(name)
    # compared by name: typer's click may not be the installed click module (its enum is another class)
    if getattr(ctx.get_parameter_source("batch_size"), "name", None) != "COMMANDLINE":
        batch_size = p.batch_size
    return {**p.kwargs_for(arch, spec_args.get("bn")), **options}, batch_size


def nio_preset_help() -> str:
    """The --preset help: every name of the NIO preset registry (``initscore.experiments.config.NIO_PRESETS``)."""
    from initscore.experiments.config import NIO_PRESETS

    return "named NIO settings (docs/engine.md); flags given explicitly win: " + " | ".join(NIO_PRESETS)


@options_from(RectifyOptions, flags={"split": "--sub-batch-split"}, skip=("seed",))
def rectify_cmd(
    ctx: typer.Context,
    arch: str = typer.Option(..., "--arch"),
    args: str = typer.Option("{}", "--args", help="architecture arguments as a JSON object"),
    data: str = typer.Option("synthetic", "--data"),
    root: Optional[str] = typer.Option(None, "--root"),
    split: str = typer.Option("train", "--split"),
    limit: Optional[int] = typer.Option(None, "--limit"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed", help="data sampling seed (of the data and of the batches NIO draws)"),
    init_seed: int = typer.Option(0, "--init-seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the rectified weights (.safetensors)"),
    as_json: bool = typer.Option(False, "--json"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    preset: Optional[str] = typer.Option(None, "--preset", help=nio_preset_help()),
    opt: Optional[list[str]] = typer.Option(None, "--opt", "-o", help=OPT_HELP),
    options: dict[str, Any] | None = None,
) -> None:
    """Rectify an initialization (NIO, Algorithm 3, or a baseline) and report held-out scores before/after."""
    if out is not None and out.suffix != ".safetensors":
        raise OptionsError(f"--out must end in .safetensors, got {str(out)!r}")
    spec = _spec(arch, args)
    hyper = {**(options or {}), "seed": seed}
    if preset is not None:
        hyper, batch_size = apply_nio_preset(ctx, preset, arch, spec.get("args", {}), hyper, batch_size)
    hyper.update(_key_values(opt))
    if data == "synthetic" and limit is None:
        held = hyper.get("heldout_batches", RectifyOptions.model_fields["heldout_batches"].default)
        limit = ((held if isinstance(held, int) else 0) + 8) * batch_size
    ref = _data_ref(spec, data, root, split, batch_size, seed, limit)
    request = _request("rectify", spec, ref, hyper, init_seed=init_seed)
    method = request["options"]["method"]
    result, weights, _ = _run(request, quiet=quiet or as_json, label=method)
    if out is not None:
        from initscore import weights_file

        summary = {**weights_file.summary_of(result.model_dump(mode="json")), **({"preset": preset} if preset else {})}
        sha = weights_file.save(out, weights, weights_file.Provenance.for_request(request, summary=summary))
        result = result.model_copy(update={"weights_sha256": sha})
    if as_json:
        typer.echo(result.model_dump_json())
        return
    _print_rectification(result.model_dump(mode="json"), out)


def _print_rectification(r: dict[str, Any], out: Path | None, exact: tuple[dict, dict] | None = None) -> None:
    """Print a rectification (a ``RectifyResult`` as JSON)."""
    from rich.table import Table

    con = _console()
    t = Table(title=f"{r['method']}: held-out scores (same gradcosine settings as the rectification)")
    for c in ("", "gc", "gn", "g_max"):
        t.add_column(c, justify="right")
    for label, d in (("before", r["heldout_before"]), ("after", r["heldout_after"])):
        if d:
            t.add_row(label, f"{d['gc']:.5f}", f"{d['gn']:.5g}", f"{d['g_max']:.5g}")
    if exact is not None:
        for label, d in (("before (exact sample GC)", exact[0]), ("after (exact sample GC)", exact[1])):
            t.add_row(label, f"{d['gc']:.5f}", f"{d['gn']:.5g}", f"{d['g_max']:.5g}")
    con.print(t)
    gamma = "-" if r["gamma"] is None else f"{r['gamma']:.5g}"
    n_bound = sum(h["constrained"] for h in r["history"])
    con.print(f"gamma {gamma}; {len(r['history'])} iterations, {n_bound} in the g_max > gamma branch; "
              f"{len(r['unscalable'])} zero tensors not rescalable; {r['seconds']:.1f} s")
    if r["select"] != "last":
        v = r.get("verification")
        checked = "" if v is None else (f"; checked on {v['batches']} more batches: "
                                        + ("within the bound" if v["passed"] else "NO iterate within the bound, "
                                           "the smallest g_max returned")
                                        + f" ({len(v['checked'])} iterates checked)")
        con.print(f"returned iterate {r['returned_iterate']} of {len(r['history'])} (select {r['select']}){checked}")
    if r["scales"]:
        vals = sorted(r["scales"].values())
        con.print(f"scales: min {vals[0]:.4g}, median {vals[len(vals) // 2]:.4g}, max {vals[-1]:.4g}")
    if out is not None:
        con.print(f"rectified weights -> {out}")


# -------------------------------------------------------------------- demo
def demo_data(limit: int = 2048):
    """Real data for the demo: CIFAR-10 (repo's shared copy or $INITSCORE_DATA_ROOT), else Debian's
    Fashion-MNIST, else the shared MNIST test set; 1-channel 28x28 images are zero-padded to 32x32 and
    repeated to 3 channels for ResNet-20."""
    import torch

    from initscore import data as data_mod

    tries = [("cifar10", data_mod.default_cifar10_root(), "train"),
             ("fashion-mnist", data_mod.default_fashion_mnist_root(), "train"),
             ("mnist", data_mod.default_mnist_root(), "test")]
    for kind, root, split in tries:
        if root is None:
            continue
        ref = {"kind": kind, "root": root, "split": split, "limit": limit, "seed": 0, "batch_size": DEMO_BATCH}
        td = _load(ref)
        if td.x.shape[1] == 1:
            x = torch.nn.functional.pad(td.x, (2, 2, 2, 2)).repeat(1, 3, 1, 1)
            td = data_mod.TensorData(x.contiguous(), td.y, td.num_classes, td.name + " (padded to 3x32x32)")
        return td, ref
    raise DataError("no real dataset found: put CIFAR-10 at ../shared/data/cifar10_jpeg (or set "
                    "INITSCORE_DATA_ROOT), or install Debian's dataset-fashion-mnist")


def demo_cmd(
    iters: int = typer.Option(DEMO_ITERS, "--iters", help="NIO iterations"),
    out: Path = typer.Option(DEMO_OUT, "--out"),
) -> None:
    """Score ResNet-20 (no BN) on real images, rectify it with NIO, report honest held-out scores."""
    import torch

    from initscore.scores import gradcosine

    con = _console()
    t0 = time.perf_counter()
    td, ref = demo_data()
    train, held = _heldout_batches(td, 2, DEMO_BATCH, 0)
    spec = {"arch": "resnet20", "args": {"bn": False}}
    model = _build(spec, 0)
    con.print(f"[bold]initscore demo[/]: ResNet-20 (bn=False, {sum(p.numel() for p in model.parameters()):,} "
              f"params) on {td.name}, {len(td)} images ({len(held)} held-out batches of {DEMO_BATCH}); "
              f"torch threads {torch.get_num_threads()}")
    from initscore.nio import heldout_scores, options_of, rectify

    options = options_of(None, dict(iters=iters, lr=DEMO_LR, mode="batch", sub_batches=2, overlap=0.6))
    x, y = held[0]
    rows = []
    for mode, kw in (("sample", {}), ("batch", {"sub_batches": options.sub_batches, "overlap": options.overlap})):
        s0 = time.perf_counter()
        s = gradcosine(model, (x, y), mode=mode, **kw)
        rows.append((mode, s, time.perf_counter() - s0))
    from rich.table import Table

    t = Table(title="Kaiming init, held-out batch 1")
    for c in ("mode", "gc", "gn", "g_max", "g_min", "seconds"):
        t.add_column(c, justify="right")
    for mode, s, secs in rows:
        label = mode if mode == "sample" else f"{mode} D={options.sub_batches} r={options.overlap}"
        t.add_row(label, f"{s.gc:.5f}", f"{s.gn:.5g}",
                  f"{s.g_max:.5g}", f"{s.g_min:.5g}", f"{secs:.2f}")
    con.print(t)
    with _progress_bar("nio") as progress:
        r = rectify(model, train, options, heldout=held, progress=progress, batch_size=DEMO_BATCH)
    exact_before = heldout_scores(model, None, held, mode="sample", sub_batches=2, overlap=0.0, bn=None, loss=None)
    exact_after = heldout_scores(model, r.state_dict, held, mode="sample", sub_batches=2, overlap=0.0, bn=None,
                                 loss=None)
    from initscore import weights_file

    request = _request("rectify", spec, ref, {**options.model_dump(mode="json"), "heldout_batches": len(held)},
                       init_seed=0)
    summary = {**weights_file.summary_of(r.to_dict()), "heldout_exact_before": exact_before,
               "heldout_exact_after": exact_after}
    sha = weights_file.save(out, r.state_dict, weights_file.Provenance.for_request(request, summary=summary))
    _print_rectification(r.to_dict(), out, exact=(exact_before, exact_after))
    d_gc = exact_after["gc"] - exact_before["gc"]
    con.print(f"held-out exact GradCosine {'rose' if d_gc > 0 else 'did not rise'}: "
              f"{exact_before['gc']:.5f} -> {exact_after['gc']:.5f} ({d_gc:+.5f}); sha256 {sha[:16]}...; "
              f"total {time.perf_counter() - t0:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("score")(score_cmd)
    app.command("rectify")(rectify_cmd)
    app.command("demo")(demo_cmd)
