"""A deploy job's live stream follows its deployment, not the hand-off: a manual deploy's job ends
when the instructions are logged, but the stream says `done` only when someone reports the deploy
(or the reaper times it out), with the deployment's status and the lines they added."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from relapp.extensions import db
from relapp.models import Deployment, Job, utcnow
from relapp.services.reaper import reap
from tests.conftest import signed_in, work_queue

from .test_sse import parse


def handed_off(shop: Any) -> tuple[int, int]:
    """A manual deploy of 1.0.0 to qa, run by a real RQ worker up to its hand-off."""
    shop.env("qa").driver = {"kind": "manual", "instructions": "Roll {tag} out by hand."}
    db.session.commit()
    shop.release("1.0.0")
    answer = shop.deploy("1.0.0", "qa")
    assert answer.status_code == 202, answer.get_json()
    work_queue()
    deployment = db.session.scalars(select(Deployment)).one()
    job = db.session.get(Job, deployment.job_id)
    assert job is not None
    # The hand-off: the job is over, the deployment waits for a person.
    assert (job.status, deployment.status, deployment.waiting_until is not None) == ("succeeded", "running", True)
    ids = deployment.id, job.id
    db.session.commit()
    return ids


class Stream:
    """The real SSE endpoint, read event by event as the client gets them."""

    def __init__(self, shop: Any, job_id: int) -> None:
        self.response = shop.client.get(f"/api/v1/jobs/{job_id}/stream", buffered=False,
                                        headers=shop.headers("vic"))
        assert self.response.status_code == 200 and self.response.mimetype == "text/event-stream"
        self.chunks = iter(self.response.response)
        self.events: list[dict[str, Any]] = []

    def until(self, wanted: Any) -> list[dict[str, Any]]:
        """Read events until one satisfies `wanted` (or the stream ends); all read so far."""
        for chunk in self.chunks:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            found = parse(text)
            self.events.extend(found)
            if any(wanted(e) for e in found):
                break
        return self.events

    def close(self) -> None:
        self.response.close()


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e.get("event") == name]


def test_the_stream_stays_open_past_the_hand_off_and_ends_with_the_reported_status(app, shop):
    deployment_id, job_id = handed_off(shop)
    stream = Stream(shop, job_id)
    try:
        events = stream.until(lambda e: e.get("event") == "deployment")
        # At the hand-off the job has succeeded, but the stream does not say done.
        assert named(events, "status")[-1]["status"] == "succeeded"
        assert named(events, "deployment") == [{"deployment": deployment_id, "status": "running",
                                                "message": named(events, "deployment")[0]["message"]}]
        assert not named(events, "done")
        assert "Roll v1.0.0 out by hand." in [line["line"] for line in named(events, "line")]

        report = shop.post(f"/api/v1/deployments/{deployment_id}/status", "erin",
                           {"status": "failed", "message": "the smoke test failed"})
        assert report.status_code == 200, report.get_json()
        events = stream.until(lambda e: e.get("event") == "done")
    finally:
        stream.close()
    lines = [line["line"] for line in named(events, "line")]
    assert "erin reported failed for qa: the smoke test failed" in lines
    assert named(events, "deployment")[-1]["status"] == "failed"
    assert events[-1]["event"] == "done"
    assert events[-1]["data"] == {"status": "failed", "error": "the smoke test failed", "last": len(lines),
                                  "deployment": deployment_id, "job_status": "succeeded"}


def test_a_hand_off_the_reaper_times_out_ends_the_stream_with_its_sentence(app, shop):
    deployment_id, job_id = handed_off(shop)
    stream = Stream(shop, job_id)
    try:
        events = stream.until(lambda e: e.get("event") == "deployment")
        assert not named(events, "done")
        report = reap(now=utcnow() + timedelta(days=2))
        assert report.timed_out == [deployment_id]
        events = stream.until(lambda e: e.get("event") == "done")
    finally:
        stream.close()
    done = events[-1]
    assert done["event"] == "done" and done["data"]["status"] == "failed"
    assert done["data"]["error"].startswith("timed out waiting for someone to mark it done")
    assert any(line["line"].startswith("reaper: timed out") for line in named(events, "line"))


def test_a_reported_deploy_replays_to_the_end_and_a_short_stream_does_not_end_at_the_hand_off(app, shop):
    deployment_id, job_id = handed_off(shop)
    app.config["RELAPP_SSE_MAX_SECONDS"] = 1
    cut_short = parse(shop.client.get(f"/api/v1/jobs/{job_id}/stream",
                                      headers=shop.headers("vic")).get_data(as_text=True))
    assert [e.get("event") for e in cut_short if e.get("event") == "done"] == []  # reconnect, not done
    assert shop.post(f"/api/v1/deployments/{deployment_id}/status", "erin",
                     {"status": "succeeded"}).status_code == 200
    replay = parse(shop.client.get(f"/api/v1/jobs/{job_id}/stream",
                                   headers=shop.headers("vic")).get_data(as_text=True))
    assert replay[-1]["event"] == "done"
    assert replay[-1]["data"]["status"] == "succeeded" and replay[-1]["data"]["error"] is None
    assert named(replay, "line")[-1]["line"] == "erin reported succeeded for qa"


def test_the_job_page_keeps_following_a_handed_off_deploy_until_it_is_reported(app, shop):
    deployment_id, job_id = handed_off(shop)
    client = signed_in(app, "vic")
    waiting = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    # The job succeeded at the hand-off; the page still streams, and says what it waits for.
    assert 'data-finished="0"' in waiting and "live · waiting for the deployment" in waiting
    assert f"<dt>Deployment</dt><dd>#{deployment_id}" in waiting
    assert 'id="deployment-status">running</span>' in waiting
    assert shop.post(f"/api/v1/deployments/{deployment_id}/status", "erin",
                     {"status": "failed", "message": "the smoke test failed"}).status_code == 200
    ended = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'data-finished="1"' in ended and "finished: failed" in ended
    assert 'id="deployment-status">failed</span>' in ended and "the smoke test failed" in ended
