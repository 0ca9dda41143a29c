"""Run an RQ worker for relapp's jobs (the connection is passed explicitly).

Work travels on one queue per kind (`<RELAPP_QUEUE>-git`: tag and hotfix jobs; `-deploy`: deploy
jobs; `-schedule`: train ticks and drift checks), so a slow deploy never holds up a tag.
`python worker.py` serves all three, one job at a time; `python worker.py --queues deploy` (a
comma-separated list of kinds) serves only those, so each kind can have processes of its own
(`make run` starts one per kind).

The worker that serves `schedule` also keeps the installation running:
- RQ's scheduler (moves due train ticks and drift checks to their queue);
- the maintenance companion, `python worker.py --maintain`, which every RELAPP_REAPER_INTERVAL
  seconds fails abandoned deploys, requeues jobs Redis lost and relays the outbox (and is started
  again if it dies);
- the queue of releases before queues per kind (named RELAPP_QUEUE itself): jobs an upgrade left
  there, queued or scheduled, still run (at the lowest priority), so none is lost.
An installation needs at least one worker serving `schedule`. Several may run: every write of the
reaper is a fenced compare-and-set, and RQ's scheduler takes a lock per queue.

The companion is a process of its own, not a thread and not a job in Redis:
- the relay must run exactly when Redis was down or lost its data, so Redis cannot schedule it;
- the worker forks a work-horse per job, and a fork taken while a thread sits inside the database
  driver or a lock copies that lock held forever into the child, which then hangs on its first
  query (seen with psycopg). A separate process keeps the worker single-threaded.

The worker owns the runtime: it builds the app once and pushes its context; RQ's forked work-horse
inherits that context and, before its job, drops the database connections it inherited
(`relapp.jobs.own_connections`). Jobs never build the app.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import Job

from relapp.extensions import QUEUE_KINDS as KINDS
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; an unknown queue kind is one sentence on stderr and exit status 2."""
    parser = argparse.ArgumentParser(
        prog="worker.py",
        description="Run an RQ worker for relapp's jobs. The worker that serves 'schedule' also "
                    "runs RQ's scheduler and the maintenance companion (reaper, requeue of lost "
                    "jobs, outbox relay) and drains the queue of older releases (RELAPP_QUEUE); "
                    "an installation needs one.")
    parser.add_argument("--queues", default=",".join(KINDS), metavar="KINDS",
                        help="comma-separated kinds of work to serve, in priority order: "
                             f"{', '.join(KINDS)} (default: all three). git: tag and hotfix jobs; "
                             "deploy: deploy jobs; schedule: train ticks and drift checks. "
                             "The queues are named <RELAPP_QUEUE>-<kind>.")
    parser.add_argument("--burst", action="store_true",
                        help="run until the queues are empty, then exit")
    parser.add_argument("--maintain", type=int, metavar="PID", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.queues.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        what = f"unknown queue kind {unknown[0]!r}" if unknown else "no queue kind"
        print(f"relapp worker: {what} in --queues; the kinds are {', '.join(KINDS)}.", file=sys.stderr)
        sys.exit(2)
    args.kinds = list(dict.fromkeys(kinds))
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the app, push its context, and work the queues of the kinds asked for until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.maintain is not None:
        return maintain(args.maintain)

    from relapp import create_app
    from relapp.extensions import db, get_legacy_queue, get_queue, get_redis
    from relapp.services.reaper import reap
    from relapp.startup import check_start

    app = create_app()
    maintains = "schedule" in args.kinds
    with app.app_context():
        connection = get_redis()
        try:
            connection.ping()
        except RedisError as exc:
            print(f"relapp worker: cannot reach Redis at the configured REDIS_URL ({exc.__class__.__name__}). "
                  "Start Redis or fix REDIS_URL.", file=sys.stderr)
            return 1
        # A warning when Redis may evict jobs; production mode's refusals (exit status 1).
        check_start(app, "worker")
        queues = [get_queue(kind) for kind in args.kinds]
        if maintains:
            queues.append(get_legacy_queue())  # last: what an upgrade left there, until it is empty
        companion = None
        if maintains and args.burst:
            # One pass on start, so a burst run also picks up committed work Redis never got.
            reap()
            db.session.remove()
        elif maintains:
            companion = Companion()
        log.info("serving %s%s", ", ".join(q.name for q in queues),
                 " with RQ's scheduler and the maintenance companion" if maintains else "")
        worker = RelappWorker(queues, connection=connection)
        try:
            worker.work(with_scheduler=maintains, burst=args.burst)
        finally:
            if companion is not None:
                companion.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
