"""Fifty people press deploy at once: one deployment, forty-nine refusals that say why, no 500."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import func, select

from relapp.extensions import db
from relapp.models import AuditEvent, Deployment, Job

N = 50


def test_fifty_concurrent_deploys_to_one_environment_give_one_deployment(app, shop, caplog):
    caplog.set_level("INFO", logger="relapp.services.deployments")
    shop.release("1.0.0")
    db.session.commit()
    tokens = shop.tokens
    people = ["erin", "eli", "rita", "ada"]
    barrier = threading.Barrier(N)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def press(index: int) -> None:
        client = app.test_client()  # its own request and app context, so its own session
        user = people[index % len(people)]
        barrier.wait()
        response = client.post("/api/v1/projects/shop/releases/1.0.0/deployments",
                               json={"environment": "qa"},
                               headers={"Authorization": f"Bearer {tokens[user]}"})
        with lock:
            results.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=press, args=(i,)) for i in range(N)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == N

    statuses = Counter(status for status, _ in results)
    assert statuses == {202: 1, 409: N - 1}, [b for s, b in results if s not in (202, 409)]
    accepted = next(body for status, body in results if status == 202)
    holder = accepted["deployment"]["requested_by"]
    for status, body in results:
        if status == 409:
            assert body["detail"].startswith("qa is busy: 1.0.0 is "), body
            assert f"(asked by {holder})" in body["detail"]
            assert [r["code"] for r in body["reasons"]] == ["busy"]
            assert "database is locked" not in body["detail"]
    # SQLite serialises writers (BEGIN IMMEDIATE), so the gate sees the winner; on PostgreSQL
    # some requests pass the gate together and the unique index refuses all but one.
    races = sum("lost the race" in r.getMessage() for r in caplog.records)
    print(f"\n{races} of {N - 1} refusals came from the unique index")
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 1
    assert db.session.scalar(select(func.count()).select_from(Job)) == 1
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "deploy.request")) == 1


def test_a_deploy_that_passed_the_gate_at_the_same_moment_is_refused_by_the_database(
        app, shop, monkeypatch):
    """Fault injection: another deploy commits between our gate check and our insert."""
    from relapp.services import deployments

    shop.release("1.0.0")
    release = shop.release("1.1.0")
    qa = shop.env("qa")
    rival = {"release_id": release.id, "environment_id": qa.id, "status": "queued",
             "requested_by_id": shop.users["eli"].id, "attempt": 0}
    real = deployments.deploy_verdict
    injected: list[bool] = []

    def then_a_rival_commits(*args, **kwargs):
        verdict = real(*args, **kwargs)
        if not injected:
            injected.append(True)
            # SQLite would make the rival wait for our write lock; end our read first so the
            # rival's insert really lands between our check and our insert, as on PostgreSQL.
            db.session.commit()
            with db.engine.begin() as conn:
                conn.execute(Deployment.__table__.insert().values(**rival))
        return verdict

    monkeypatch.setattr(deployments, "deploy_verdict", then_a_rival_commits)
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    response = shop.deploy("1.0.0", "qa", "erin")
    assert response.status_code == 409
    assert response.get_json()["detail"] == (
        "qa is busy: 1.1.0 is queued (asked by eli); wait for it or cancel it.")
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 1
    assert db.session.scalar(select(func.count()).select_from(Job)) == 0
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == before
