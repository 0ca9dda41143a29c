"""`make run`: set up the database and the demo, then run web and worker together until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Start the embedded Redis (if no REDIS_URL), upgrade the database, make the demo, run both."""
    os.environ.setdefault("RELAPP_DEMO", "1")
    embedded = not os.environ.get("REDIS_URL")
    port = os.environ.get("PORT", "5000")
    from flask_migrate import upgrade

    from relapp import create_app
    from relapp.cli import ensure_demo

    app = create_app()
    os.environ["REDIS_URL"] = app.config["REDIS_URL"]
    with app.app_context():
        from relapp.extensions import ensure_embedded_redis

        ensure_embedded_redis()
        upgrade(directory=str(ROOT / "migrations"))
        if app.config["RELAPP_DEMO"]:
            ensure_demo(app)
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
        if embedded and not os.environ.get("RELAPP_KEEP_REDIS"):
            from relapp.embedded import stop_server

            stop_server(Path(app.instance_path) / "redis")
    return code


if __name__ == "__main__":
    sys.exit(main())
