"""Prometheus metrics of the service: jobs by state, queue depth, workers, job duration, submissions, 4xx answers.

State counts, queue depths and the duration histogram are read from the shared
index at scrape time (the workers write the duration buckets into Redis), so one
API replica reports the whole deployment. Submissions and 4xx answers (:class:`CountRejected`) are counted by
this API process. Every figure is the deployment's, none is per tenant: /metrics needs an admin key.
"""
from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from initscore.server.index import DURATION_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _IndexCollector(Collector):
    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self.backend.index.counts()
            depths = self.backend.queue_depths()
            workers = self.backend.workers()
            durations = self.backend.index.durations()
        except Exception:  # Redis down: export only the process-local counters
            return
        g = GaugeMetricFamily("initscore_jobs", "Jobs in the index by state", labels=["state"])
        for state, n in counts.items():
            g.add_metric([state], n)
        yield g
        q = GaugeMetricFamily("initscore_queue_depth", "Jobs waiting in each queue", labels=["queue"])
        for name, n in depths.items():
            q.add_metric([name], n)
        yield q
        w = GaugeMetricFamily("initscore_workers", "Workers listening on each queue", labels=["queue"])
        for name, n in workers.items():
            w.add_metric([name], n)
        yield w
        h = HistogramMetricFamily("initscore_job_duration_seconds", "Run time of finished and failed jobs", labels=["kind"])
        for kind, d in sorted(durations.items()):
            cum, buckets = 0.0, []
            for b in DURATION_BUCKETS:
                cum += d.get(repr(b), 0.0)
                buckets.append((repr(b), cum))
            cum += d.get("+Inf", 0.0)
            buckets.append(("+Inf", cum))
            h.add_metric([kind], buckets, sum_value=d.get("sum", 0.0))
        yield h


class CountRejected:
    """Pure ASGI middleware, the outermost of the app's: counts every 4xx answer by status in ``counter`` (the
    ``initscore_requests_rejected`` counter), whichever part answered it -- request validation, a route's problem,
    authentication, :class:`service.app.BodyGuard`, :class:`service.routes.jobs.JobReadFastPath`. The one place
    they are counted."""

    def __init__(self, app: Any, counter: Any) -> None:
        self.app, self.counter = app, counter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                self.counter.labels(str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


class ServiceMetrics:
    """A per-app registry (tests create many apps in one process)."""

    def __init__(self, backend: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_IndexCollector(backend))
        self.submitted = Counter("initscore_jobs_submitted", "Jobs accepted by this API process", ["kind", "how"], registry=self.registry)
        self.rejected = Counter("initscore_requests_rejected", "4xx answers of this API process", ["status"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
