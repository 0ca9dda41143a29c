"""gunicorn settings for the production start: `gunicorn -c python:relapp.gunicorn_conf relapp.wsgi:app`.

Its `on_starting` hook runs once, in gunicorn's master before any web worker is forked: it runs
the start-up checks (relapp.startup: a warning when Redis's maxmemory-policy is not noeviction;
in production mode a refusal, one sentence on stderr and exit status 1, while the demo's users
exist or SECRET_KEY is a default), and when RELAPP_CONFIG is set it syncs that file, as
`flask --app relapp config sync` does. A bad file stops the start with the same one-sentence
error on stderr and exit status 1. Command-line options (`--workers`, `--bind`, ...) override the
defaults below; `make run` (relapp.run) uses this file too, with RELAPP_START_CHECKED set (it synced
already; outside production mode the hook then skips its checks and sync).

Metrics: every web worker writes its request counters into PROMETHEUS_MULTIPROC_DIR, and a scrape
of `/metrics` sums them all (relapp.services.metrics). This file sets that directory when the
environment does not (a fresh temporary one, removed at exit), before anything imports
prometheus_client; the master wipes it at start, and drops a dead worker's live gauges
(`child_exit`), so open streams are counted by the workers alive.

Logs: in production mode gunicorn's own lines and its access log are JSON lines too, the access
line with the request's `X-Request-ID` (relapp.logging_setup).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger


def _metrics_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR, made here (a fresh temporary folder) when not set."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="relapp-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        os.environ["RELAPP_METRICS_DIR_MADE"] = path  # ours: removed at exit
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


# Before the app or prometheus_client is imported anywhere (the workers inherit it at fork).
METRICS_DIR = _metrics_dir()

# gevent: a request is a greenlet, so open live streams hold no thread a page request needs (the
# README's "Live pages" says why). Its own refusals (414, 431, malformed HTTP) are problem+json.
worker_class = "relapp.gunicorn_worker.ProblemGeventWorker"
worker_connections = 1000  # open connections per worker: streams and page requests together
# What gunicorn refuses before relapp sees a request (its defaults, named here): a request line
# over 4094 bytes is a 414, more than 100 headers or one over 8190 bytes a 431. Bodies are
# bounded by relapp itself (RELAPP_MAX_BODY_BYTES, 413).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
timeout = 120
graceful_timeout = 5
accesslog = "-"  # stdout; JSON lines in production mode (JsonLogger below)
# No control socket by default: its path is one per user, so two starts would share it.
control_socket_disable = True


def _production() -> bool:
    return os.environ.get("RELAPP_ENV", "").strip().lower() == "production"


class JsonLogger(Logger):
    """gunicorn's logger; in production mode its lines are JSON (relapp.logging_setup's shape),
    and an access line carries method, path (no query string: it may hold tokens), status,
    duration, size, client and the request's X-Request-ID."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if _production():
            from relapp.logging_setup import JsonLines

            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonLines())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not _production():
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        headers = {str(k).lower(): v for k, v in resp.headers}
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-")
        self.access_log.info("%s %s %s", method, path, status, extra={
            "method": method, "path": path, "status": int(status),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "bytes": getattr(resp, "sent", None), "remote_addr": environ.get("REMOTE_ADDR"),
            "request_id": headers.get("x-request-id"),
            "user_agent": environ.get("HTTP_USER_AGENT")})


logger_class = JsonLogger


def on_starting(server: Any) -> None:
    """Once per start (the master), never once per worker: wipe the metrics folder, then run the
    start-up checks and the RELAPP_CONFIG sync in a process of their own (`python -m
    relapp.startup`), so the master imports no app before it forks gevent workers. A refusal or
    a bad file: its sentence on stderr (printed by that process) and exit status 1."""
    for stale in Path(METRICS_DIR).glob("*.db"):
        stale.unlink(missing_ok=True)
    if os.environ.get("RELAPP_START_CHECKED") and not _production():
        return  # `make run` checked and synced before it started us (never in production mode)
    checks = subprocess.run([sys.executable, "-m", "relapp.startup", "web server"], check=False)
    if checks.returncode != 0:
        on_exit(server)
        raise SystemExit(1)


def child_exit(server: Any, worker: Any) -> None:
    """A web worker ended: its live gauges (open streams) no longer count; counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """Remove the metrics folder this file made (one the environment named is left alone)."""
    made = os.environ.get("RELAPP_METRICS_DIR_MADE")
    if made and made == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(made, ignore_errors=True)
