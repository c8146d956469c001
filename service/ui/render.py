"""HTML fragments of the /ui page, rendered from the same JSON views the API returns (every value escaped)."""
from __future__ import annotations

import html
import json
from typing import Any, Iterable, Sequence

from service.ui import svg

e = html.escape


def _num(v: Any, digits: int = 4) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return e(str(v))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "sortable", raw: set[int] = frozenset()
          ) -> str:
    """A table whose header cells sort it (ui.js); column indexes in ``raw`` hold HTML already escaped."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            key = "" if v is None else (repr(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else "")
            sort = f' data-sort="{e(key)}"' if key else ""
            cells.append(f"<td{sort}>{v if i in raw else _num(v)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def progress_bar(progress: dict[str, Any] | None, status: str) -> str:
    frac = 1.0 if status == "finished" else float((progress or {}).get("fraction") or 0.0)
    frac = min(max(frac, 0.0), 1.0)
    return (f'<div class="bar" data-status="{e(status)}" title="{frac:.0%}"><div style="width:{frac * 100:.1f}%"></div>'
            f'<span class="pct">{frac:.0%}</span></div>')


def jobs_list(items: list[dict[str, Any]], progress: dict[str, dict[str, Any] | None],
              next_cursor: str | None = None) -> str:
    """The newest jobs first, one page; ``next_cursor``: a link to the older ones."""
    if not items:
        return '<p class="empty">No jobs yet for this key.</p>'
    rows = []
    for it in items:
        link = f'<a href="#/jobs/{e(it["id"])}">{e(it["id"])}</a>'
        err = (it.get("error") or {}).get("type", "")
        rows.append((link, it["kind"], f'<span class="st {e(it["status"])}">{e(it["status"])}</span>',
                     progress_bar(progress.get(it["id"]), it["status"]), it.get("created_at") or "",
                     it.get("finished_at") or "", e(err)))
    more = f'<p><a class="older" href="#/?cursor={e(next_cursor)}">older jobs</a></p>' if next_cursor else ""
    return f'<p class="count">{len(items)} job(s) on this page</p>' + table(
        ["job", "kind", "status", "progress", "created", "finished", "error"], rows, raw={0, 2, 3, 6}) + more


def _kv(d: dict[str, Any]) -> str:
    return table(["", "value"], [(k, v) for k, v in d.items()], cls="kv")


def _score(res: dict[str, Any]) -> str:
    out = [_kv({k: res.get(k) for k in ("arch", "params", "gc", "gn", "g_max", "g_min", "n", "mode", "bn", "seconds")})]
    if res.get("proxies"):
        out.append("<h3>Proxies</h3>" + table(["proxy", "value"], sorted(res["proxies"].items())))
    layers = res.get("layers") or []
    if layers:
        names = [layer["name"] for layer in layers]
        out.append('<h3>Per tensor (the paper\'s Figure 3 pair)</h3><div class="charts">'
                   + svg.bars(names, [layer.get("norm_ratio") for layer in layers], log=True,
                              title="(a) max/min per-sample gradient-norm ratio", xlabel="tensor, input to output")
                   + svg.bars(names, [layer.get("gc") for layer in layers], title="(b) GradCosine",
                              xlabel="tensor, input to output") + "</div>")
        out.append(table(["tensor", "numel", "gc", "gn", "norm ratio"],
                         [(layer["name"], layer["numel"], layer["gc"], layer["gn"], layer.get("norm_ratio"))
                          for layer in layers]))
    return "".join(out)


def _rectify(res: dict[str, Any], job_id: str, has_weights: bool) -> str:
    before, after = res.get("heldout_before") or {}, res.get("heldout_after") or {}
    out = [_kv({k: res.get(k) for k in ("arch", "method", "params", "gamma", "select", "returned_iterate", "seconds")})]
    if before or after:
        out.append("<h3>Held-out scores</h3>" + table(["", "before", "after"],
                                                    [(k, before.get(k), after.get(k)) for k in sorted(set(before) | set(after))]))
    hist = res.get("history") or []
    if hist:
        it = [h["it"] for h in hist]
        refs = {"gamma": res["gamma"]} if res.get("gamma") else None
        out.append('<h3>NIO trajectory</h3><div class="charts">'
                   + svg.lines({"GC": [h["gc"] for h in hist]}, x=it, title="GradCosine", xlabel="iteration")
                   + svg.lines({"GN": [h["gn"] for h in hist]}, x=it, title="GradNorm", xlabel="iteration")
                   + svg.lines({"g_max": [h["g_max"] for h in hist]}, x=it, refs=refs, title="g_max against gamma",
                               xlabel="iteration") + "</div>")
    scales = res.get("scales") or {}
    if scales:
        out.append("<h3>Scales</h3>" + svg.bars(list(scales), list(scales.values()), title="per-tensor scale",
                                                 xlabel="tensor"))
    if has_weights:
        out.append(f'<p><button class="dl" data-url="/v1/jobs/{e(job_id)}/weights" data-name="{e(job_id)}.safetensors">'
                   "Download rectified weights (.safetensors)</button></p>")
    return "".join(out)


def _batch(res: dict[str, Any]) -> str:
    rows = []
    for ent in res.get("entries") or []:
        r = ent.get("result") or {}
        rows.append((ent.get("rank"), ent["model"]["arch"], json.dumps(ent["model"].get("args") or {}, sort_keys=True),
                     ent.get("score"), r.get("gc"), r.get("gn"), r.get("params"), ent["status"], ent.get("error") or ""))
    return (f"<p>ranked by <b>{e(str(res.get('rank_by')))}</b></p>"
            + table(["rank", "arch", "args", "score", "gc", "gn", "params", "status", "error"], rows))


def _search(res: dict[str, Any]) -> str:
    rows = [(rank, c["model"]["arch"], json.dumps(c["model"].get("args") or {}, sort_keys=True), c.get("score"),
             c.get("index")) for rank, c in enumerate(res.get("top") or [], start=1)]
    head = (f"<p>the {e(str(res.get('k')))} best of {e(str(res.get('total')))} by <b>{e(str(res.get('proxy')))}</b>; "
            f"{e(str(res.get('failed')))} not scorable, {e(str(res.get('resumed')))} taken from a checkpoint</p>")
    return head + table(["rank", "arch", "args", "score", "candidate"], rows)


def _propagation(res: dict[str, Any]) -> str:
    layers = res.get("layers") or []
    out = [_kv({"arch": res.get("arch"), "input-output CKA": res.get("input_output_cka"), "seconds": res.get("seconds")})]
    if layers:
        out.append('<div class="charts">' + svg.lines(
            {"forward Var[h]": [layer["forward_var"] for layer in layers],
             "backward Var[dL/dh]": [layer.get("backward_var") for layer in layers]},
            x=[layer["depth"] for layer in layers], log=True, title="per-layer variance", xlabel="depth") + "</div>")
        out.append(table(["layer", "depth", "forward var", "backward var"],
                         [(layer["name"], layer["depth"], layer["forward_var"], layer.get("backward_var")) for layer in layers]))
    return "".join(out)


def job_page(view: dict[str, Any]) -> str:
    status = view["status"]
    head = (f'<h2>{e(view["kind"])} job <code>{e(view["id"])}</code> <span class="st {e(status)}">{e(status)}</span></h2>'
            + progress_bar(view.get("progress"), status))
    parts = [head]
    if view.get("error"):
        err = view["error"]
        parts.append(f'<p class="err">{e(str(err.get("type", "")))}: {e(str(err.get("detail") or err.get("title") or ""))}</p>')
    req = view.get("request") or {}
    model = req.get("model") or {"models": len(req.get("models") or [])}
    parts.append(f'<details><summary>request</summary><pre>{e(json.dumps(req, indent=1, sort_keys=True))}</pre></details>'
                 f'<p class="model">model: <code>{e(json.dumps(model, sort_keys=True))}</code></p>')
    res = view.get("result")
    if res:
        kind = res.get("kind")
        if kind == "score":
            parts.append(_score(res))
        elif kind == "rectify":
            parts.append(_rectify(res, view["id"], bool(view.get("weights_sha256"))))
        elif kind == "batch":
            parts.append(_batch(res))
        elif kind == "propagation":
            parts.append(_propagation(res))
        elif kind == "search":
            parts.append(_search(res))
    events = view.get("events") or []
    if events:
        parts.append("<details><summary>events</summary><ul>"
                     + "".join(f"<li>{e(str(ev))}</li>" for ev in events) + "</ul></details>")
    return f'<section class="job" data-job="{e(view["id"])}" data-status="{e(status)}">{"".join(parts)}</section>'


def admin_page(queues: dict[str, int], workers: list[dict[str, Any]]) -> str:
    q = table(["queue", "jobs waiting"], sorted(queues.items()))
    w = table(["worker", "state", "queues", "current job", "last heartbeat"],
              [(x["name"], x["state"], ", ".join(x["queues"]), x.get("current_job") or "", x.get("last_heartbeat") or "")
               for x in workers]) if workers else '<p class="empty">No worker is registered.</p>'
    return f"<h2>Queues</h2>{q}<h2>Workers</h2>{w}"
