"""Password checks are bounded (issue 10): OWASP's argon2id parameters, at most
RELAPP_PASSWORD_CHECKS checks at once per process, older hashes renewed at sign-in (demo users
too), and under gevent the check runs in gevent's threadpool, so the hub keeps serving.

The bound is observed through the counters relapp.security.Passwords exposes (`peak`), never
through timing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import extract_parameters

from config import Config
from relapp.extensions import db, get_passwords
from relapp.models import User
from relapp.security import Passwords
from relapp.services.accounts import create_user
from tests.conftest import ROOT, login, production_server

OLD = {"memory_kib": 16, "time_cost": 3, "parallelism": 2}  # not the configured parameters


def params(password_hash: str) -> tuple[int, int, int]:
    found = extract_parameters(password_hash)
    return found.memory_cost, found.time_cost, found.parallelism


def configured(app: Any) -> tuple[int, int, int]:
    return (app.config["RELAPP_ARGON2_MEMORY_KIB"], app.config["RELAPP_ARGON2_TIME_COST"],
            app.config["RELAPP_ARGON2_PARALLELISM"])


def stored_hash(username: str) -> str:
    db.session.rollback()
    return str(db.session.scalar(db.select(User.password_hash).where(User.username == username)))


def test_the_defaults_are_owasps_and_four_checks_at_once() -> None:
    settings = Config({})
    assert (settings.RELAPP_ARGON2_MEMORY_KIB, settings.RELAPP_ARGON2_TIME_COST,
            settings.RELAPP_ARGON2_PARALLELISM, settings.RELAPP_PASSWORD_CHECKS) == (19 * 1024, 2, 1, 4)
    assert Config({"RELAPP_PASSWORD_CHECKS": "0"}).RELAPP_PASSWORD_CHECKS == 1
    with pytest.raises(ValueError, match="RELAPP_PASSWORD_CHECKS must be a number"):
        Config({"RELAPP_PASSWORD_CHECKS": "many"})


def test_concurrent_sign_ins_never_run_more_checks_than_the_bound(app_ctx) -> None:
    app = app_ctx
    # Checks that take a while (8 MiB, 3 passes), two at a time.
    app.config.update(RELAPP_PASSWORD_CHECKS=2, RELAPP_ARGON2_MEMORY_KIB=8 * 1024, RELAPP_ARGON2_TIME_COST=3)
    app.extensions.pop("relapp.passwords", None)
    names = [f"user{i}" for i in range(16)]
    for name in names:
        create_user(name, "a good password", "viewer")
    passwords = get_passwords()
    assert passwords.concurrency == 2
    passwords.peak = 0

    start = threading.Barrier(len(names))
    answers: dict[str, int] = {}

    def sign_in(name: str, address: str) -> None:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address  # the sign-in limit counts per address
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        start.wait(timeout=60)
        answers[name] = client.post("/login", data={"username": name, "password": "a good password",
                                                    "csrf_token": token}).status_code

    threads = [threading.Thread(target=sign_in, args=(name, f"10.0.0.{i + 1}")) for i, name in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == dict.fromkeys(names, 302)
    # Sixteen sign-ins at once: checks did overlap, and never more than two of them.
    assert passwords.peak == 2
    assert passwords.in_flight == 0


def test_a_demo_users_older_hash_is_renewed_when_they_sign_in(app_ctx) -> None:
    app = app_ctx
    app.config["RELAPP_DEMO"] = True
    create_user("qa", "demo", "qa", is_demo=True, actor="demo")
    user = db.session.scalar(db.select(User).where(User.username == "qa"))
    user.password_hash = Passwords(**OLD).hash("demo")  # made by an older release's defaults
    db.session.commit()
    client = app.test_client()
    assert login(client, "qa", "wrong").status_code == 401
    assert params(stored_hash("qa")) == (16, 3, 2)  # a failed sign-in changes nothing
    assert login(client, "qa", "demo").status_code == 302
    assert params(stored_hash("qa")) == configured(app)
    assert login(app.test_client(), "qa", "demo").status_code == 302  # and the new hash works


# -- under gevent ----------------------------------------------------------------------------

PATCHED = textwrap.dedent('''\
    from gevent import monkey
    monkey.patch_all()
    import json
    import gevent
    from relapp.security import Passwords

    passwords = Passwords(memory_kib=8 * 1024, time_cost=3, parallelism=1, concurrency=2)
    stored = passwords.hash("pw")
    checking = []
    ticks = []

    def ticker():
        while True:
            if checking:
                ticks.append(1)  # this greenlet ran while a check was under way
            gevent.sleep(0)

    def check(password):
        checking.append(1)
        try:
            return passwords.verify(stored, password)
        finally:
            checking.pop()

    gevent.spawn(ticker)
    checks = [gevent.spawn(check, p) for p in ["pw", "nope", "pw", "pw", "nope", "pw"]]
    gevent.joinall(checks, timeout=120)
    print(json.dumps({"results": [c.value for c in checks], "peak": passwords.peak,
                      "ticks": len(ticks)}))
''')


def test_under_gevent_checks_run_in_the_threadpool_and_the_hub_keeps_serving() -> None:
    out = subprocess.run([sys.executable, "-c", PATCHED], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["results"] == [True, False, True, True, False, True]
    assert 1 <= found["peak"] <= 2
    # A check done on the hub itself would let no other greenlet run meanwhile.
    assert found["ticks"] > 0


@pytest.fixture
def gevent_server(backend: dict[str, str], app: Any, tmp_path: Path) -> Iterator[str]:
    """The production start (`gunicorn -c python:relapp.gunicorn_conf`: the gevent worker)."""
    with production_server(backend, tmp_path) as server:
        yield server["url"]


def test_sign_in_works_on_the_gevent_worker_and_renews_an_older_hash(app, gevent_server) -> None:
    with app.app_context():
        create_user("gina", "her password", "viewer")
        user = db.session.scalar(db.select(User).where(User.username == "gina"))
        user.password_hash = Passwords(**OLD).hash("her password")
        db.session.commit()
    with httpx.Client(base_url=gevent_server, timeout=60) as client:
        page = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        wrong = client.post("/login", data={"username": "gina", "password": "not hers", "csrf_token": token})
        assert wrong.status_code == 401
        answer = client.post("/login", data={"username": "gina", "password": "her password",
                                             "csrf_token": token})
        assert answer.status_code == 302, answer.text[-2000:]
        assert client.get("/").status_code == 200
    with app.app_context():
        assert params(stored_hash("gina")) == configured(app)
