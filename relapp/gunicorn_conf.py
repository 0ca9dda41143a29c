"""gunicorn settings for the production start: `gunicorn -c python:relapp.gunicorn_conf relapp.wsgi:app`.

Its `on_starting` hook runs once, in gunicorn's master before any web worker is forked: when
RELAPP_CONFIG is set it syncs that file, as `flask --app relapp config sync` does. A bad file
stops the start with the same one-sentence error on stderr and exit status 1. Command-line
options (`--workers`, `--bind`, ...) override the defaults below; `make run` (relapp.run)
passes the same worker class on its command line and keeps gunicorn's limits (named below).
"""

from __future__ import annotations

from typing import Any

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


def on_starting(server: Any) -> None:
    """Sync RELAPP_CONFIG once per start (the master), never once per worker."""
    from config import Config

    if not Config().RELAPP_CONFIG:
        return  # nothing to sync: the master builds no app
    from relapp import create_app
    from relapp.cli import sync_at_start
    from relapp.extensions import db

    app = create_app()
    sync_at_start(app)
    # The workers build apps of their own; the master keeps no connection a fork would share.
    with app.app_context():
        db.engine.dispose()
    client = app.extensions.pop("relapp.redis", None)
    if client is not None:
        client.close()
