"""Small inline-SVG charts rendered on the server (no JavaScript library, no CDN; works offline).

``lines(series, ...)`` draws one or more y-series against a shared x, optionally on a log10 y axis and
with horizontal reference lines (a bound such as gamma); ``bars(labels, values, ...)`` draws one bar per
label (a per-tensor quantity). Every text is escaped; non-finite values are left out of the drawing.
"""
from __future__ import annotations

import html
import math
from typing import Sequence

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 220, 56, 12, 22, 34
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _scale(lo: float, hi: float, a: float, b: float):
    if hi <= lo:
        hi = lo + 1.0
    return lambda v: a + (v - lo) / (hi - lo) * (b - a)


def _prep(values: Sequence[float | None], log: bool) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        if v is None or not math.isfinite(v) or (log and v <= 0):
            out.append(None)
        else:
            out.append(math.log10(v) if log else float(v))
    return out


def _frame(title: str, ylo: float, yhi: float, log: bool, xlabel: str, sy) -> list[str]:
    parts = [f'<text x="{PAD_L}" y="14" class="t">{html.escape(title)}</text>',
             f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" class="ax"/>',
             f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" class="ax"/>',
             f'<text x="{W - PAD_R}" y="{H - 4}" text-anchor="end" class="l">{html.escape(xlabel)}</text>']
    for v in (ylo, (ylo + yhi) / 2, yhi):
        label = _fmt(10 ** v) if log else _fmt(v)
        parts.append(f'<text x="{PAD_L - 4}" y="{sy(v) + 4:.1f}" text-anchor="end" class="l">{label}</text>')
    return parts


def lines(series: dict[str, Sequence[float | None]], *, title: str, x: Sequence[float] | None = None,
          log: bool = False, refs: dict[str, float] | None = None, xlabel: str = "") -> str:
    """An SVG line chart of ``series`` (name -> values) against ``x`` (default 0..n-1)."""
    prepped = {k: _prep(v, log) for k, v in series.items()}
    ref_vals = {k: _prep([v], log)[0] for k, v in (refs or {}).items()}
    n = max((len(v) for v in prepped.values()), default=0)
    xs = list(x) if x is not None else list(range(n))
    ys = [v for vs in prepped.values() for v in vs if v is not None] + [v for v in ref_vals.values() if v is not None]
    if not ys or not xs:
        return f'<svg class="chart" viewBox="0 0 {W} {H}"><text x="{PAD_L}" y="14" class="t">{html.escape(title)}: no data</text></svg>'
    ylo, yhi = min(ys), max(ys)
    if yhi - ylo < 1e-12:
        ylo, yhi = ylo - 0.5, yhi + 0.5
    sx = _scale(min(xs), max(xs), PAD_L, W - PAD_R)
    sy = _scale(ylo, yhi, H - PAD_B, PAD_T)
    parts = _frame(title, ylo, yhi, log, xlabel, sy)
    for (name, vals), color in zip(prepped.items(), COLORS):
        pts = [f"{sx(xv):.1f},{sy(v):.1f}" for xv, v in zip(xs, vals) if v is not None]
        if pts:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{" ".join(pts)}"/>')
    for name, v in ref_vals.items():
        if v is not None:
            parts.append(f'<line x1="{PAD_L}" y1="{sy(v):.1f}" x2="{W - PAD_R}" y2="{sy(v):.1f}" class="ref"/>'
                         f'<text x="{W - PAD_R}" y="{sy(v) - 3:.1f}" text-anchor="end" class="l">{html.escape(name)}</text>')
    legend = "".join(f'<tspan fill="{c}">■ {html.escape(k)} </tspan>' for k, c in zip(prepped, COLORS))
    parts.append(f'<text x="{W - PAD_R}" y="14" text-anchor="end" class="l">{legend}</text>')
    return f'<svg class="chart" role="img" viewBox="0 0 {W} {H}">{"".join(parts)}</svg>'


def bars(labels: Sequence[str], values: Sequence[float | None], *, title: str, log: bool = False,
         xlabel: str = "") -> str:
    """An SVG bar chart, one bar per label (hover shows the label and value)."""
    vals = _prep(values, log)
    finite = [v for v in vals if v is not None]
    if not finite:
        return f'<svg class="chart" viewBox="0 0 {W} {H}"><text x="{PAD_L}" y="14" class="t">{html.escape(title)}: no data</text></svg>'
    ylo, yhi = min(0.0, min(finite)), max(finite)
    if yhi - ylo < 1e-12:
        yhi = ylo + 1.0
    sy = _scale(ylo, yhi, H - PAD_B, PAD_T)
    parts = _frame(title, ylo, yhi, log, xlabel, sy)
    n = len(vals)
    step = (W - PAD_L - PAD_R) / max(n, 1)
    base = sy(max(ylo, 0.0) if not log else ylo)
    for i, (lab, v, raw) in enumerate(zip(labels, vals, values)):
        if v is None:
            continue
        y = sy(v)
        top, h = (y, base - y) if y < base else (base, y - base)
        parts.append(f'<rect x="{PAD_L + i * step + 0.5:.1f}" y="{top:.1f}" width="{max(step - 1, 0.8):.1f}" '
                     f'height="{max(h, 0.5):.1f}" fill="{COLORS[0]}"><title>{html.escape(str(lab))}: '
                     f'{_fmt(float(raw))}</title></rect>')
    return f'<svg class="chart" role="img" viewBox="0 0 {W} {H}">{"".join(parts)}</svg>'
