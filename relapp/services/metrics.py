"""Prometheus metrics for `/metrics` (prometheus-client).

Two kinds, kept apart on purpose:
- what a web process sees (requests by method, endpoint and status; their latency; open live
  streams) is counted in the process itself. Under gunicorn these are multiprocess metrics: each
  worker writes its own files in PROMETHEUS_MULTIPROC_DIR (set and wiped by gunicorn's master,
  relapp.gunicorn_conf), and a scrape, whichever worker serves it, sums them all. Open streams
  are a 'livesum' gauge: the files of a worker that died are dropped (child_exit);
- what the installation holds (jobs by kind and status, RQ queue depths, deploy durations) is
  read from the database and Redis at scrape time: workers run on other machines and RQ's
  work-horses come and go, so no process could count it alone.

PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is first imported (it picks its
value store then): gunicorn's configuration module does it in the master, before any app.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from flask import Flask, current_app, g, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import QUEUE_KINDS, db, get_redis
from ..models import Deployment, Environment, Job, Project, utcnow

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Label values a client cannot multiply: any other method is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DEPLOY_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
FINISHED = ("succeeded", "failed", "cancelled")

REQUESTS = Counter("relapp_http_requests", "HTTP requests answered, by method, endpoint "
                   "(the Flask endpoint; 'none' when no route matched) and status.",
                   ["method", "endpoint", "status"])
REQUEST_SECONDS = Histogram("relapp_http_request_duration_seconds", "Time from the request's "
                            "arrival in relapp to its response's headers (a stream's body "
                            "is not included), by method and endpoint.",
                            ["method", "endpoint"], buckets=LATENCY_BUCKETS)
OPEN_STREAMS = Gauge("relapp_open_streams", "Server-sent event streams open now, by stream "
                     "(events: the live doorbell; job: a job's log).", ["stream"],
                     multiprocess_mode="livesum")


def init_app(app: Flask) -> None:
    """Count every request (registered first, so its clock covers the other hooks too) and
    every open live stream (through relapp.services.live's hook, once per process)."""
    from . import live

    if _stream_counted not in live.STREAM_HOOKS:
        live.STREAM_HOOKS.append(_stream_counted)

    @app.before_request
    def _clock() -> None:
        g.relapp_started = time.perf_counter()

    @app.after_request
    def _count(response: Any) -> Any:
        started = g.pop("relapp_started", None)
        method = request.method if request.method in METHODS else "other"
        endpoint = request.endpoint or "none"
        try:
            REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
            if started is not None:
                REQUEST_SECONDS.labels(method, endpoint).observe(time.perf_counter() - started)
        except OSError as exc:  # the metrics folder went away: the answer still goes out
            log.warning("metrics: a request could not be counted (%s)", exc)
        return response


def _stream_counted(kind: str, delta: int) -> None:
    """relapp.services.live's hook: a stream of this kind opened (+1) or closed (-1)."""
    OPEN_STREAMS.labels(kind).inc(delta)


# -- what the installation holds, read at scrape time ----------------------------------------


def _job_families() -> list[Metric]:
    rows = db.session.execute(select(Job.kind, Job.status, func.count()).group_by(
        Job.kind, Job.status)).all()
    finished = CounterMetricFamily(
        "relapp_jobs_finished", "Jobs that ended, by kind and outcome (succeeded, failed, "
        "cancelled), from the database.", labels=["kind", "outcome"])
    active = GaugeMetricFamily(
        "relapp_jobs_active", "Jobs queued or running now, by kind and status, from the database.",
        labels=["kind", "status"])
    for kind, status, count in sorted(rows):
        if status in FINISHED:
            finished.add_metric([kind, status], count)
        else:
            active.add_metric([kind, status], count)
    return [finished, active]


def window_seconds() -> float:
    return float(current_app.config.get("RELAPP_METRICS_WINDOW_SECONDS") or 86400)


def _deploy_families() -> list[Metric]:
    window = window_seconds()
    since = utcnow() - timedelta(seconds=window)
    rows = db.session.execute(
        select(Project.key, Environment.name, Deployment.status, Deployment.started_at,
               Deployment.finished_at)
        .join(Environment, Deployment.environment_id == Environment.id)
        .join(Project, Environment.project_id == Project.id)
        .where(Deployment.finished_at >= since, Deployment.started_at.is_not(None))).all()
    groups: dict[tuple[str, str, str], list[float]] = {}
    for project, environment, status, started, finished in rows:
        if started is None or finished is None:
            continue
        seconds = max(0.0, (finished - started).total_seconds())
        groups.setdefault((project, environment, status), []).append(seconds)
    family = GaugeHistogramMetricFamily(
        "relapp_deploy_duration_seconds",
        f"Durations of the deployments that ended in the last {window:g} s "
        "(RELAPP_METRICS_WINDOW_SECONDS), from start to end, by project, environment and outcome, "
        "from the database.", labels=["project", "environment", "outcome"])
    for labels, durations in sorted(groups.items()):
        buckets = [(_le(bound), sum(1 for d in durations if d <= bound)) for bound in DEPLOY_BUCKETS]
        buckets.append(("+Inf", len(durations)))
        family.add_metric(list(labels), buckets, gsum_value=sum(durations))
    return [family]


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


def queue_names() -> list[tuple[str, str]]:
    """(kind, RQ queue name) of every queue relapp uses, the older single queue last."""
    base = current_app.config["RQ_QUEUE"]
    return [(kind, f"{base}-{kind}") for kind in QUEUE_KINDS] + [("legacy", base)]


def _queue_families() -> list[Metric]:
    names = queue_names()
    pipe = get_redis().pipeline(transaction=False)
    for _kind, name in names:
        pipe.llen(f"rq:queue:{name}")
        pipe.zcard(f"rq:wip:{name}")
        pipe.zcard(f"rq:scheduled:{name}")
        pipe.zcard(f"rq:failed:{name}")
    answers = pipe.execute()
    depth = GaugeMetricFamily("relapp_queue_depth", "Jobs waiting in each RQ queue, from Redis.",
                              labels=["queue", "kind"])
    started = GaugeMetricFamily("relapp_queue_started", "Jobs a worker of each RQ queue has "
                                "started and not finished, from Redis.", labels=["queue", "kind"])
    scheduled = GaugeMetricFamily("relapp_queue_scheduled", "Jobs scheduled for later in each RQ "
                                  "queue (train slots, drift checks), from Redis.",
                                  labels=["queue", "kind"])
    failed = GaugeMetricFamily("relapp_queue_failed", "Jobs in each RQ queue's failed registry, "
                               "from Redis.", labels=["queue", "kind"])
    for index, (kind, name) in enumerate(names):
        values = answers[4 * index:4 * index + 4]
        for family, value in zip((depth, started, scheduled, failed), values, strict=True):
            family.add_metric([name, kind], int(value))
    return [depth, started, scheduled, failed]


def state_families() -> list[Metric]:
    """Jobs, deploy durations and queue depths, read now; a source that does not answer is
    reported by `relapp_metrics_source_up{source=...} 0` instead of failing the scrape."""
    families: list[Metric] = []
    up = GaugeMetricFamily("relapp_metrics_source_up", "1 when the scrape could read this source "
                           "(database, redis), 0 when it could not.", labels=["source"])
    try:
        families += _job_families()
        families += _deploy_families()
        up.add_metric(["database"], 1)
    except SQLAlchemyError as exc:
        log.warning("metrics: the database could not be read (%s)", exc.__class__.__name__)
        up.add_metric(["database"], 0)
    finally:
        db.session.rollback()
    try:
        families += _queue_families()
        up.add_metric(["redis"], 1)
    except (RedisError, OSError) as exc:
        log.warning("metrics: Redis could not be read (%s)", exc.__class__.__name__)
        up.add_metric(["redis"], 0)
    families.append(up)
    return families


class _Families:
    """A collector that hands over families read already."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    """The text exposition: this installation's process metrics (every gunicorn worker's, summed,
    in multiprocess mode) followed by the state read now from the database and Redis."""
    folder = multiprocess_dir()
    if folder:
        from prometheus_client.multiprocess import MultiProcessCollector

        os.makedirs(folder, exist_ok=True)  # removed under us (a /tmp cleaner): an empty sum

        processes = CollectorRegistry()
        MultiProcessCollector(processes)  # type: ignore[no-untyped-call]
    else:
        processes = REGISTRY
    state = CollectorRegistry()
    state.register(_Families(state_families()))
    return generate_latest(processes) + generate_latest(state)
