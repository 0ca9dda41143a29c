"""`make run`: set up the database and the demo, sync RELAPP_CONFIG, then run web and worker
together until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Start the embedded Redis (if no REDIS_URL), upgrade the database, make the demo, sync
    RELAPP_CONFIG (a bad file: its sentence on stderr, exit status 1), run both."""
    os.environ.setdefault("RELAPP_DEMO", "1")
    embedded = not os.environ.get("REDIS_URL")
    port = os.environ.get("PORT", "5000")
    from relapp import create_app

    app = create_app()
    os.environ["REDIS_URL"] = app.config["REDIS_URL"]
    try:
        prepare(app)
    except BaseException:  # a failed set-up (a bad RELAPP_CONFIG: exit 1) leaves no Redis behind
        _stop_embedded_redis(app, embedded)
        raise
    python = sys.executable
    web = subprocess.Popen(
        [python, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
         "--threads", "16", "--workers", "1", "--timeout", "120", "--graceful-timeout", "5",
         "--access-logfile", "-", "relapp.wsgi:app"], cwd=ROOT)
    worker = subprocess.Popen([python, "worker.py"], cwd=ROOT)
    children = [web, worker]
    print(f"\nrelapp runs on http://127.0.0.1:{port}", flush=True)
    if app.config["RELAPP_DEMO"]:
        print("Demo users: admin, release, engineer, qa, viewer — password: demo", flush=True)
    print("Stop with Ctrl-C.\n", flush=True)

    def stop(*_args: object) -> None:
        raise KeyboardInterrupt

    # Also when started from a script, where SIGINT may arrive ignored: Ctrl-C stops everything.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        code = 1
        print("relapp: a process stopped; stopping the others.", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        _stop_embedded_redis(app, embedded)
    return code


def prepare(app: Flask) -> None:
    """Everything before the processes start: the embedded Redis, the schema, the demo (with
    RELAPP_DEMO) and then RELAPP_CONFIG's projects beside it, synced here once: the web server
    is started without relapp.gunicorn_conf's hook."""
    from flask_migrate import upgrade

    from relapp.cli import ensure_demo, sync_at_start
    from relapp.extensions import ensure_embedded_redis

    with app.app_context():
        ensure_embedded_redis()
        upgrade(directory=str(ROOT / "migrations"))
        if app.config["RELAPP_DEMO"]:
            ensure_demo(app)
    sync_at_start(app)


def _stop_embedded_redis(app: Flask, embedded: bool) -> None:
    """Stop the embedded Redis server this start began (unless RELAPP_KEEP_REDIS is set)."""
    if embedded and not os.environ.get("RELAPP_KEEP_REDIS"):
        from relapp.embedded import stop_server

        stop_server(Path(app.instance_path) / "redis")


if __name__ == "__main__":
    sys.exit(main())
