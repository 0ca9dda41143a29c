"""Run the RQ worker that executes relapp's git and deploy jobs (the connection is passed explicitly).

`python worker.py` also starts its maintenance companion, `python worker.py --maintain`, which every
RELAPP_REAPER_INTERVAL seconds fails abandoned deploys, requeues jobs Redis lost and relays the
outbox (and starts it again if it dies). It is a process of its own, not a thread and not a job in Redis:
- the relay must run exactly when Redis was down or lost its data, so Redis cannot schedule it;
- the worker forks a work-horse per job, and a fork taken while a thread sits inside the database
  driver or a lock copies that lock held forever into the child, which then hangs on its first
  query (seen with psycopg). A separate process keeps the worker single-threaded.
Several workers may reap at once: every write of the reaper is a fenced compare-and-set.

The worker owns the runtime: it builds the app once and pushes its context; RQ's forked work-horse
inherits that context and, before its job, drops the database connections it inherited
(`relapp.jobs.own_connections`). Jobs never build the app.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import Job

from relapp.jobs import own_connections

log = logging.getLogger("relapp.worker")


def maintain(parent: int) -> int:
    """Reap, requeue and relay every interval until the worker that started us is gone.

    A pass the database refused for a moment (busy, a dropped connection) is tried again after
    a second rather than a whole interval: every write of the reaper is fenced, so a pass that
    stopped halfway is simply done again.
    """
    from sqlalchemy.exc import DBAPIError

    from relapp import create_app
    from relapp.extensions import CONTENDED, db, retryable
    from relapp.jobs.schedule import ensure_scheduled
    from relapp.services.reaper import reap

    app = create_app()
    interval = float(app.config.get("RELAPP_REAPER_INTERVAL") or 15)
    CONTENDED.set(True)  # the web server and the jobs write meanwhile
    with app.app_context():
        while os.getppid() == parent:
            pause = interval
            try:
                reap()
                # Train slots and the drift tick live in Redis: rebuild them if Redis lost them.
                ensure_scheduled()
            except DBAPIError as exc:
                db.session.rollback()
                if retryable(exc):
                    log.info("maintenance pass: the database refused it for now (%s); again soon",
                             exc.orig.__class__.__name__)
                    pause = min(interval, 1.0)
                else:
                    log.exception("maintenance pass failed")
            except Exception:  # a failed pass is logged and retried next interval
                log.exception("maintenance pass failed")
                db.session.rollback()
            finally:
                db.session.remove()
            time.sleep(pause)
    return 0


class Companion:
    """The maintenance companion of one worker, started again whenever it dies.

    It is watched through SIGCHLD rather than a thread (the worker forks work-horses and must stay
    single-threaded, see above): the handler runs in the worker's main thread, between two
    bytecodes, also while RQ waits for a job or for its work-horse.
    """

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.stopping = False
        self.proc = self._start()
        signal.signal(signal.SIGCHLD, self._child_ended)

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--maintain",
                                 str(self.owner)])

    def _child_ended(self, _signum: int, _frame: object) -> None:
        # Only the worker itself restarts it (a work-horse resets the handler, see below).
        if self.stopping or os.getpid() != self.owner or self.proc.poll() is None:
            return
        log.warning("maintenance companion (pid %s) ended with status %s; starting it again",
                    self.proc.pid, self.proc.returncode)
        self.proc = self._start()

    def stop(self) -> None:
        self.stopping = True
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.proc.terminate()
        self.proc.wait(timeout=30)


class RelappWorker(Worker):
    """RQ's forking Worker, whose work-horse takes database connections of its own first."""

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # Runs in the forked child, inside the app context that main() pushed. The companion's
        # watch belongs to the worker: the horse's own children (git, a deploy command) are its.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        own_connections()
        super().main_work_horse(job, queue)


def main() -> int:
    """Build the app, push its context, and work the queue until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = sys.argv[1:]
    if "--maintain" in args:
        return maintain(int(args[args.index("--maintain") + 1]))

    from relapp import create_app
    from relapp.extensions import db, get_queue, get_redis
    from relapp.services.reaper import reap

    app = create_app()
    burst = "--burst" in args
    with app.app_context():
        connection = get_redis()
        try:
            connection.ping()
        except RedisError as exc:
            print(f"relapp worker: cannot reach Redis at the configured REDIS_URL ({exc.__class__.__name__}). "
                  "Start Redis or fix REDIS_URL.", file=sys.stderr)
            return 1
        companion = None
        if burst:
            # One pass on start, so a burst run also picks up committed work Redis never got.
            reap()
            db.session.remove()
        else:
            companion = Companion()
        worker = RelappWorker([get_queue()], connection=connection)
        try:
            worker.work(with_scheduler=True, burst=burst)
        finally:
            if companion is not None:
                companion.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
