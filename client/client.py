"""Python client of the initscore service (httpx; torch only inside `load_rectified`).

    from client import Client
    c = Client("http://localhost:8000", api_key="...")
    job = c.submit_score({"arch": "resnet20"}, {"kind": "cifar10", "root": ROOT, "batch_size": 64})
    done = c.wait(job, progress=True)
    print(done["result"]["gc"])
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import httpx

from initscore.contract import FINAL_STATES
from client.errors import JobFailed, ServiceError, UnavailableError, from_response
from initscore.contract import DEFAULT_RANK_BY

FINAL = FINAL_STATES
JobRef = str | Mapping[str, Any]


def _id(job: JobRef) -> str:
    return job if isinstance(job, str) else str(job["id"])


def _spec(model: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(model, str):
        return {"arch": model, "args": {}}
    return {"arch": model["arch"], "args": dict(model.get("args") or {})}


def _dump(obj: Any) -> Any:
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj


class Client:
    """Typed wrapper of the /v1 API. Connection errors and 502/503/504 are retried with backoff
    (`retries` times); other errors raise a :class:`client.errors.ServiceError` subclass."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.5, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.retries, self.backoff, self._timeout = retries, backoff, timeout
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    # ------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                r = self._http.request(method, path, **kw)
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectTimeout, httpx.WriteError) as exc:
                last = exc
            else:
                if r.status_code in (502, 503, 504) and attempt < self.retries:
                    last = from_response(r.status_code, self._body(r))
                else:
                    if r.status_code >= 400:
                        raise from_response(r.status_code, self._body(r))
                    return r
            if attempt < self.retries:
                time.sleep(self.backoff * (2 ** attempt))
        if isinstance(last, ServiceError):
            raise last
        raise UnavailableError(503, "Service unreachable", f"{type(last).__name__}: {last}") from last

    @staticmethod
    def _body(r: httpx.Response) -> Any:
        try:
            return r.json()
        except ValueError:
            return {"title": r.reason_phrase, "detail": r.text[:500]}

    # ------------------------------------------------------------ submit
    def submit(self, request: Mapping[str, Any] | Any, *, idempotency_key: str | None = None, reuse: bool = True) -> dict[str, Any]:
        """POST /v1/jobs with any JobRequest (dict or contract model); returns the job resource."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        r = self._request("POST", "/v1/jobs", json=_dump(request), headers=headers, params={"reuse": str(reuse).lower()})
        return r.json()

    def submit_score(self, model: str | Mapping[str, Any], data: Mapping[str, Any], options: Mapping[str, Any] | None = None,
                     **kw: Any) -> dict[str, Any]:
        return self.submit({"kind": "score", "model": _spec(model), "data": dict(data), "options": dict(options or {})}, **kw)

    def submit_rectify(self, model: str | Mapping[str, Any], data: Mapping[str, Any], options: Mapping[str, Any] | None = None,
                       *, init_seed: int = 0, **kw: Any) -> dict[str, Any]:
        return self.submit({"kind": "rectify", "model": _spec(model), "data": dict(data), "options": dict(options or {}),
                            "init_seed": init_seed}, **kw)

    def submit_batch(self, models: Iterable[str | Mapping[str, Any]], data: Mapping[str, Any],
                     options: Mapping[str, Any] | None = None, *, rank_by: str = DEFAULT_RANK_BY, **kw: Any) -> dict[str, Any]:
        return self.submit({"kind": "batch", "models": [_spec(m) for m in models], "data": dict(data),
                            "options": dict(options or {}), "rank_by": rank_by}, **kw)

    def submit_propagation(self, model: str | Mapping[str, Any], data: Mapping[str, Any],
                           options: Mapping[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.submit({"kind": "propagation", "model": _spec(model), "data": dict(data), "options": dict(options or {})}, **kw)

    def submit_search(self, data: Mapping[str, Any], *, models: Iterable[str | Mapping[str, Any]] | None = None,
                      cells: Iterable[str] | None = None, sample: Mapping[str, Any] | None = None, k: int = 5,
                      proxy: str = DEFAULT_RANK_BY, seed: int = 0, args: Mapping[str, Any] | None = None,
                      **kw: Any) -> dict[str, Any]:
        """A search job: the k best of `models`, NB201 `cells` or a space `sample` ({"space": "nb201", "n": N,
        "sample_seed": S}) by `proxy`; its result (``wait``/``get``) lists them under ``result["top"]``."""
        req: dict[str, Any] = {"kind": "search", "data": dict(data), "k": k, "proxy": proxy, "seed": seed}
        if models is not None:
            req["models"] = [_spec(m) for m in models]
        if cells is not None:
            req["cells"] = list(cells)
        if sample is not None:
            req["sample"] = dict(sample)
        if args:
            req["args"] = dict(args)
        return self.submit(req, **kw)

    # ------------------------------------------------------------ read
    def get(self, job: JobRef, *, wait: float = 0.0) -> dict[str, Any]:
        if not wait:
            return self._request("GET", f"/v1/jobs/{_id(job)}").json()
        return self._request("GET", f"/v1/jobs/{_id(job)}", params={"wait": wait}, timeout=self._timeout + wait).json()

    def group(self, group_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/groups/{group_id}").json()

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in {"status": status, "kind": kind, "limit": limit, "cursor": cursor}.items() if v is not None}
        return self._request("GET", "/v1/jobs", params=params).json()

    def iter_jobs(self, **filters: Any) -> Iterable[dict[str, Any]]:
        cursor = None
        while True:
            page = self.list(cursor=cursor, **filters)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def models(self) -> dict[str, Any]:
        return self._request("GET", "/v1/models").json()

    def cancel(self, job: JobRef) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/jobs/{_id(job)}").json()

    def wait(self, job: JobRef, *, timeout: float | None = None, poll: float = 10.0, progress: bool = False,
             raise_on_failure: bool = False) -> dict[str, Any]:
        """Long-poll until the job is finished/failed/cancelled; `progress=True` shows a rich progress bar."""
        jid = _id(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = task = None
        if progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                           TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False)
            bar.start()
            task = bar.add_task(jid, total=1.0, info="")
        try:
            while True:
                step = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
                cur = self.get(jid, wait=step if not progress else min(step, 1.0))
                if bar is not None:
                    p = cur.get("progress") or {}
                    m = p.get("metrics") or {}
                    info = cur["status"] + "".join(f" {k}={v:.4g}" for k, v in m.items() if isinstance(v, float))
                    bar.update(task, completed=p.get("fraction") or 0.0, info=info)
                if cur["status"] in FINAL:
                    if raise_on_failure and cur["status"] != "finished":
                        raise JobFailed(cur)
                    return cur
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {jid} still {cur['status']} after {timeout} s")
        finally:
            if bar is not None:
                bar.stop()

    # ------------------------------------------------------------ artifacts
    def download_weights(self, job: JobRef, path: str | Path) -> Path:
        """Stream the rectified weights (.safetensors) to `path`; verifies the sha256 ETag. Returns the path."""
        import hashlib
        import os

        path = Path(path)
        jid = _id(job)
        tmp = path.with_name(f".{path.name}.part")
        with self._http.stream("GET", f"/v1/jobs/{jid}/weights") as r:
            if r.status_code >= 400:
                r.read()
                raise from_response(r.status_code, self._body(r))
            etag = r.headers.get("etag", "").strip('"')
            h = hashlib.sha256()
            with open(tmp, "wb") as fh:
                for chunk in r.iter_bytes():
                    h.update(chunk)
                    fh.write(chunk)
        if etag and h.hexdigest() != etag:
            tmp.unlink(missing_ok=True)
            raise ServiceError(502, "Corrupt download", f"weights sha256 {h.hexdigest()} does not match ETag {etag}")
        os.replace(tmp, path)
        return path

    def weights_bytes(self, job: JobRef) -> bytes:
        return self._request("GET", f"/v1/jobs/{_id(job)}/weights").content

    def download_plot(self, job: JobRef, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self._request("GET", f"/v1/jobs/{_id(job)}/plot").content)
        return path

    def upload_model(self, path: str | Path) -> dict[str, Any]:
        """POST /v1/models: upload your own network as an ONNX file; returns {sha256, spec, summary}. Use
        ``result["spec"]`` (``{"arch": "onnx", "args": {"sha256": ...}}``) as the model of any job."""
        data = Path(path).read_bytes()
        r = self._request("POST", "/v1/models", content=data, headers={"Content-Type": "application/octet-stream"})
        return r.json()

    def download_onnx(self, job: JobRef, path: str | Path) -> Path:
        """An ONNX upload's rectify job: write the uploaded graph with the rectified initializers to ``path``."""
        path = Path(path)
        path.write_bytes(self._request("GET", f"/v1/jobs/{_id(job)}/onnx").content)
        return path

    def load_rectified(self, job: JobRef, model: Any, *, strict: bool = True) -> Any:
        """Load a rectify job's weights into a torch `model` by name (imports torch and safetensors here only).

        For an ONNX upload the weights are keyed by the file's initializer names, which are the PyTorch
        parameter names when the network was exported from PyTorch (``torch.onnx.export``); pass
        ``strict=False`` to load them into such a module whose buffers the file does not carry."""
        from initscore.weights_file import load

        state, _ = load(self.weights_bytes(job))
        model.load_state_dict(state, strict=strict)
        return model

    def provenance(self, job: JobRef) -> Any:
        """The weights file's :class:`initscore.weights_file.Provenance` (request, hash, versions, summary; no torch)."""
        from initscore.weights_file import read_provenance

        return read_provenance(self.weights_bytes(job))
