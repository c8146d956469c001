"""`initscore submit|status|wait|fetch` (the client) and `initscore serve|worker` (the service).

Examples:
  initscore serve --inline                                  # API + in-process jobs, no Redis
  INITSCORE_REDIS_URL=redis://localhost:6379/0 initscore serve --port 8000
  INITSCORE_REDIS_URL=redis://localhost:6379/0 initscore worker [--gpus 0,1]
  initscore submit score --arch resnet20 --args '{"bn": false}' --data cifar10 --root ../shared/data/cifar10_jpeg --wait
  initscore submit rectify --arch mlp --data synthetic --options '{"iters": 20}'
  initscore submit batch --models '[{"arch":"mlp"},{"arch":"mlp","args":{"depth":4}}]' --data synthetic
  initscore submit --file request.json     # any kind; `initscore search ... --print-request` writes a search request
  initscore status JOB ; initscore wait JOB ; initscore fetch JOB --out weights.safetensors

The client verbs read INITSCORE_URL (default http://127.0.0.1:8000) and INITSCORE_API_KEY.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from initscore.contract import DEFAULT_RANK_BY
from initscore.errors import OptionsError

DEFAULT_URL = "http://127.0.0.1:8000"


def _client(url: str | None, api_key: str | None) -> Any:
    from client import Client

    return Client(url or os.environ.get("INITSCORE_URL", DEFAULT_URL), api_key=api_key or os.environ.get("INITSCORE_API_KEY"))


def _json_arg(name: str, text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise OptionsError(f"{name} must be JSON ({exc.msg})") from None


def _service_call(fn: Any) -> Any:
    from client import ServiceError

    try:
        return fn()
    except ServiceError as exc:
        extra = "".join(f"\n  {e.get('loc')}: {e.get('msg')}" for e in exc.errors[1:5]) if len(exc.errors) > 1 else ""
        typer.echo(f"error: {exc.status} {exc.title}: {exc.detail}{extra}", err=True)
        raise SystemExit(2) from None


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(job, indent=2))
        return
    line = f"{job['id']}  {job['kind']}  {job['status']}"
    p = job.get("progress") or {}
    if job["status"] == "running" and p.get("fraction") is not None:
        line += f"  {100 * p['fraction']:.1f}%"
    if job.get("error"):
        line += f"  {job['error']['title']}: {job['error']['detail']}"
    res = job.get("result") or {}
    if res.get("kind") == "score":
        line += f"  GC={res['gc']:.6g} GN={res['gn']:.6g}"
    elif res.get("kind") == "rectify":
        after = res.get("heldout_after") or {}
        line += f"  method={res['method']} held-out GC after={after.get('gc')}"
    elif res.get("kind") == "batch":
        top = [e for e in res["entries"] if e.get("rank") == 1]
        if top:
            line += f"  best: {top[0]['model']['arch']} {top[0]['model']['args']} ({res['rank_by']}={top[0]['score']:.6g})"
    typer.echo(line)


def register(app: typer.Typer) -> None:
    @app.command("submit")
    def submit(
        kind: Optional[str] = typer.Argument(None, help="score | rectify | batch | propagation (omit with --file)"),
        file: Optional[Path] = typer.Option(None, "--file", "-f", help="a JSON job request"),
        arch: str = typer.Option("mlp", help="registered architecture (initscore models / GET /v1/models)"),
        args: Optional[str] = typer.Option(None, help="architecture arguments as JSON"),
        models: Optional[str] = typer.Option(None, help="batch: JSON list of {arch, args} specs"),
        data: str = typer.Option("synthetic", help="data kind: cifar10, mnist, imagefolder, tensors, synthetic, ..."),
        root: Optional[str] = typer.Option(None, help="dataset root (must be under the service's allowed roots)"),
        batch_size: int = typer.Option(64, help="samples per scoring batch"),
        seed: int = typer.Option(0, help="which samples"),
        shape: Optional[str] = typer.Option(None, help="synthetic data: per-sample shape, e.g. 3,32,32"),
        num_classes: Optional[int] = typer.Option(None, help="synthetic data: number of classes"),
        options: Optional[str] = typer.Option(None, help="job options as JSON (see docs/service.md)"),
        rank_by: str = typer.Option(DEFAULT_RANK_BY, help="batch: the recommended score (default), gradcosine, "
                                                         "gradnorm or a proxy in options.proxies"),
        idempotency_key: Optional[str] = typer.Option(None, help="a retried submit with the same key returns the same job"),
        wait: bool = typer.Option(False, "--wait", help="wait for the job and show a progress bar"),
        as_json: bool = typer.Option(False, "--json", help="print the job resource as JSON"),
        url: Optional[str] = typer.Option(None, help="service URL (default $INITSCORE_URL or http://127.0.0.1:8000)"),
        api_key: Optional[str] = typer.Option(None, help="API key (default $INITSCORE_API_KEY)"),
    ) -> None:
        """Submit a job to the service."""
        if file is not None:
            try:
                req = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise OptionsError(f"--file {file}: {exc}") from None
        else:
            if kind == "search":
                raise OptionsError("a search request: write it with `initscore search ... --print-request > req.json` "
                                   "and send it with `initscore submit --file req.json`")
            if kind not in ("score", "rectify", "batch", "propagation"):
                raise OptionsError("give a job kind (score, rectify, batch, propagation) or --file REQUEST.json")
            ref: dict[str, Any] = {"kind": data, "batch_size": batch_size, "seed": seed}
            if root:
                ref["root"] = root
            if shape:
                try:
                    ref["shape"] = [int(v) for v in shape.split(",")]
                except ValueError:
                    raise OptionsError(f"--shape must be comma-separated integers like 3,32,32, got {shape!r}") from None
            if num_classes is not None:
                ref["num_classes"] = num_classes
            req = {"kind": kind, "data": ref, "options": _json_arg("--options", options, {})}
            if kind == "batch":
                specs = _json_arg("--models", models, None)
                if not isinstance(specs, list) or not specs:
                    raise OptionsError('batch needs --models \'[{"arch": ..., "args": {...}}, ...]\'')
                req["models"], req["rank_by"] = specs, rank_by
            else:
                req["model"] = {"arch": arch, "args": _json_arg("--args", args, {})}
        with _client(url, api_key) as c:
            job = _service_call(lambda: c.submit(req, idempotency_key=idempotency_key))
            if wait:
                job = _service_call(lambda: c.wait(job, progress=sys.stderr.isatty()))
            _print_job(job, as_json)
            if wait and job["status"] != "finished":
                raise SystemExit(1)

    @app.command("status")
    def status(
        job_id: str = typer.Argument(..., help="job id (j_...)"),
        as_json: bool = typer.Option(False, "--json"),
        url: Optional[str] = typer.Option(None), api_key: Optional[str] = typer.Option(None),
    ) -> None:
        """Show a job's status, progress, error or result summary."""
        with _client(url, api_key) as c:
            _print_job(_service_call(lambda: c.get(job_id)), as_json)

    @app.command("wait")
    def wait_cmd(
        job_id: str = typer.Argument(...),
        timeout: Optional[float] = typer.Option(None, help="give up after this many seconds"),
        progress: bool = typer.Option(True, help="show a progress bar"),
        as_json: bool = typer.Option(False, "--json"),
        url: Optional[str] = typer.Option(None), api_key: Optional[str] = typer.Option(None),
    ) -> None:
        """Wait for a job to end; exit 1 unless it finished."""
        with _client(url, api_key) as c:
            try:
                job = _service_call(lambda: c.wait(job_id, timeout=timeout, progress=progress and sys.stderr.isatty()))
            except TimeoutError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise SystemExit(3) from None
            _print_job(job, as_json)
            if job["status"] != "finished":
                raise SystemExit(1)

    @app.command("fetch")
    def fetch(
        job_id: str = typer.Argument(...),
        out: Optional[Path] = typer.Option(None, help="weights (.safetensors) or plot (.png) path; default <job>.<ext>"),
        result: Optional[Path] = typer.Option(None, help="also write the result JSON here"),
        url: Optional[str] = typer.Option(None), api_key: Optional[str] = typer.Option(None),
    ) -> None:
        """Download a finished job's artifacts: rectified weights or propagation plot, and its result JSON."""
        with _client(url, api_key) as c:
            job = _service_call(lambda: c.get(job_id))
            if job["status"] != "finished":
                raise OptionsError(f"job {job_id} is {job['status']}; fetch works once it has finished")
            if result is not None:
                result.write_text(json.dumps(job["result"], indent=2))
                typer.echo(f"result -> {result}")
            if job["kind"] == "rectify":
                path = _service_call(lambda: c.download_weights(job_id, out or Path(f"{job_id}.safetensors")))
                typer.echo(f"weights -> {path} (sha256 {job['weights_sha256']})")
                if (job.get("result") or {}).get("onnx_sha256"):
                    onnx_out = (out.with_suffix(".onnx") if out else Path(f"{job_id}.onnx"))
                    typer.echo(f"rectified ONNX -> {_service_call(lambda: c.download_onnx(job_id, onnx_out))}")
            elif job["kind"] == "propagation" and job.get("plot_sha256"):
                path = _service_call(lambda: c.download_plot(job_id, out or Path(f"{job_id}.png")))
                typer.echo(f"plot -> {path}")
            elif result is None:
                typer.echo(json.dumps(job["result"], indent=2))

    @app.command("upload")
    def upload(
        path: Path = typer.Argument(..., help="your network as an .onnx file (its initializers are its weights)"),
        url: Optional[str] = typer.Option(None), api_key: Optional[str] = typer.Option(None),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Upload your own network (ONNX) to the service; prints the spec to use as a job's model."""
        if not path.is_file():
            raise OptionsError(f"{str(path)!r} is not a file")
        try:
            with path.open("rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise OptionsError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
        with _client(url, api_key) as c:
            up = _service_call(lambda: c.upload_model(path))
        if as_json:
            typer.echo(json.dumps(up))
            return
        s = up["summary"]
        typer.echo(f"uploaded {path.name}: sha256 {up['sha256']}, {s['params']:,} weights, opset {s['opset']}, "
                   f"input {s['input_shape']}")
        typer.echo(f"model spec: {json.dumps(up['spec'])}")

    @app.command("serve")
    def serve(
        inline: bool = typer.Option(False, "--inline", help="run jobs in this process (no Redis, no worker)"),
        host: str = typer.Option("127.0.0.1"),
        port: int = typer.Option(8000),
        workers: int = typer.Option(1, help="inline: job threads"),
        processes: int = typer.Option(1, min=1, max=64, help="queued: API processes (uvicorn --workers); every "
                                      "request may go to any of them, all state is in Redis and the artifact store"),
    ) -> None:
        """Run the API (uvicorn). Queued mode needs INITSCORE_REDIS_URL and `initscore worker`."""
        import uvicorn

        from service.app import create_app
        from initscore.server.settings import Settings

        settings = Settings()
        if inline:
            if processes > 1:
                raise OptionsError("--processes needs the queued service: inline jobs and their index live in one process")
            settings = settings.model_copy(update={"redis_url": None, "inline_workers": workers})
        elif settings.redis_url is None:
            raise OptionsError("set INITSCORE_REDIS_URL for the queued service, or use `initscore serve --inline`")
        if processes > 1:  # each process builds its app from the same environment
            uvicorn.run("service.app:create_app", factory=True, host=host, port=port, workers=processes,
                        log_level=settings.log_level)
            return
        uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level)

    @app.command("worker")
    def worker_cmd(
        queues: str = typer.Option("initscore-score,initscore-rectify", help="comma-separated queues"),
        gpus: Optional[str] = typer.Option(None, help="comma-separated GPU ids: one worker process per GPU"),
        burst: bool = typer.Option(False, help="exit when the queues are empty"),
    ) -> None:
        """Start one RQ worker (SimpleWorker, JSON serializer) on INITSCORE_REDIS_URL."""
        from worker.main import main as worker_main

        argv = ["--queues", queues] + (["--gpus", gpus] if gpus else []) + (["--burst"] if burst else [])
        raise SystemExit(worker_main(argv))
