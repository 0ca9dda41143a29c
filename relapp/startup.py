"""The checks every start runs (gunicorn's master, `python worker.py`): a warning when Redis may
evict relapp's keys, and in production mode (RELAPP_ENV=production) a refusal, one sentence on
stderr and exit status 1, while the demo's users exist or SECRET_KEY is a default.

gunicorn's master runs `python -m relapp.startup` (the checks, then the RELAPP_CONFIG sync) as a
process of its own: the master then imports no app, no database driver and no Redis client
before it forks its gevent workers (which monkey-patch at their start).
"""

from __future__ import annotations

import logging
import sys

from flask import Flask

from .extensions import db
from .services import health

log = logging.getLogger("relapp.start")


def check_start(app: Flask, who: str) -> None:
    """Warn about Redis's eviction policy; exit with status 1 when production mode refuses."""
    with app.app_context():
        warning = health.eviction_warning()
        if warning:
            log.warning(warning)
        refusal = health.production_refusal()
        db.session.remove()
    if refusal:
        print(f"relapp {who} refuses to start in production mode: {refusal}", file=sys.stderr,
              flush=True)
        raise SystemExit(1)


def main(argv: list[str]) -> int:
    """`python -m relapp.startup [WHO]`: the checks, then the RELAPP_CONFIG sync (gunicorn's
    master); exit status 1 when either stops the start."""
    from . import create_app
    from .cli import sync_at_start

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    app = create_app()
    check_start(app, argv[0] if argv else "web server")
    sync_at_start(app)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
