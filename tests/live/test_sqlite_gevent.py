"""Under gevent a SQLite lock wait yields: a greenlet waiting for BEGIN IMMEDIATE lets the other
greenlets of its worker run, and gets the lock once the other process lets go."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import create_engine, text

from relapp.extensions import GEVENT_BUSY_MS, cooperative_sqlite
from tests.conftest import ROOT

SCRIPT = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import subprocess, sys, time
    import gevent
    from sqlalchemy import create_engine
    from relapp.extensions import cooperative_sqlite

    path, holder_code = sys.argv[1], sys.argv[2]
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
    assert cooperative_sqlite(engine)
    holder = subprocess.Popen([sys.executable, "-c", holder_code, path], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"locked"  # the other process holds the lock
    ticks = []

    def ticker():
        while True:
            ticks.append(1)
            gevent.sleep(0.01)

    tick = gevent.spawn(ticker)
    gevent.sleep(0)
    before = len(ticks)
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits for the holder, cooperatively
        during = len(ticks) - before
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        conn.exec_driver_sql("COMMIT")
    tick.kill()
    holder.wait()
    print("ticks while waiting:", during)
""")

HOLDER = textwrap.dedent("""
    import sqlite3, sys, time
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO t VALUES (1)")
    print("locked", flush=True)
    time.sleep(1.0)
    db.execute("COMMIT")
""")


def _database(tmp_path: Path) -> Path:
    path = tmp_path / "wait.sqlite3"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("PRAGMA journal_mode=WAL"))
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    engine.dispose()
    return path


def test_a_greenlet_waiting_for_the_sqlite_lock_lets_the_others_run(tmp_path):
    path = _database(tmp_path)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path), HOLDER], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    during = int(done.stdout.rsplit(":", 1)[1])
    assert during > 0  # the ticker ran while the BEGIN IMMEDIATE waited (blocked in C: 0)
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM t ORDER BY n")).scalars().all() == [1, 2]
    engine.dispose()


def test_without_gevent_nothing_changes_and_forced_it_sets_a_short_busy_timeout(tmp_path):
    path = _database(tmp_path)
    plain = create_engine(f"sqlite:///{path}")
    assert not cooperative_sqlite(plain)  # this process is not patched
    forced = create_engine(f"sqlite:///{path}")
    assert cooperative_sqlite(forced, force=True)
    with forced.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == GEVENT_BUSY_MS
    plain.dispose()
    forced.dispose()
