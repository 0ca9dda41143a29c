"""Run the RQ worker that executes relapp's git and deploy jobs (the connection is passed explicitly)."""

from __future__ import annotations

import logging
import sys

from redis.exceptions import RedisError


def main() -> int:
    """Build the app, push its context, and work the queue until stopped."""
    from rq import Worker

    from relapp import create_app
    from relapp.extensions import get_queue, get_redis

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app()
    with app.app_context():
        connection = get_redis()
        try:
            connection.ping()
        except RedisError as exc:
            print(f"relapp worker: cannot reach Redis at the configured REDIS_URL ({exc.__class__.__name__}). "
                  "Start Redis or fix REDIS_URL.", file=sys.stderr)
            return 1
        worker = Worker([get_queue()], connection=connection)
        worker.work(with_scheduler=True, burst="--burst" in sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
