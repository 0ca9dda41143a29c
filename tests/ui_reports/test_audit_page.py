"""The audit log page: newest first, filters, keyset pages, read-only."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from relapp.extensions import db
from relapp.models import AuditEvent

from .conftest import signed_in


def ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="audit-(\d+)">', html)]


def add(action: str, actor: str, at: datetime, project_id: int | None = None) -> int:
    event = AuditEvent(action=action, actor=actor, at=at, project_id=project_id, target="t", detail="d")
    db.session.add(event)
    db.session.commit()
    return event.id


def test_newest_first_and_keyset_pages(app, history):
    for n in range(60):
        add("test.bulk", "bot", datetime(2026, 1, 1, tzinfo=UTC), history.project.id)
    client = signed_in(app, "vic")
    first = client.get("/audit").get_data(as_text=True)
    page1 = ids(first)
    assert len(page1) == 50 and page1 == sorted(page1, reverse=True)
    newest = db.session.query(db.func.max(AuditEvent.id)).scalar()
    assert page1[0] == newest
    older = re.search(r'href="(/audit\?before=\d+)" rel="next"', first).group(1)
    assert older == f"/audit?before={page1[-1]}"
    page2 = ids(client.get(older).get_data(as_text=True))
    assert page2 and max(page2) < min(page1)
    total = db.session.query(db.func.count(AuditEvent.id)).scalar()
    assert len(page1) + len(page2) == min(total, 100)


def test_filters_by_project_action_actor_and_dates(app, history):
    a = add("environment.lock", "rita", datetime(2026, 2, 10, 9, tzinfo=UTC), history.project.id)
    b = add("environment.unlock", "rita", datetime(2026, 2, 12, 9, tzinfo=UTC), history.project.id)
    c = add("deploy.request", "erin", datetime(2026, 2, 11, 9, tzinfo=UTC), history.project.id)
    d = add("deploy.request", "erin", datetime(2026, 2, 11, 10, tzinfo=UTC), None)
    client = signed_in(app, "vic")

    def shown(query: str) -> set[int]:
        return set(ids(client.get("/audit?" + query).get_data(as_text=True))) & {a, b, c, d}

    assert shown("action=environment.lock") == {a}
    assert shown("action=environment") == {a, b}
    assert shown("action=deploy&project=demo") == {c}
    assert shown("actor=erin") == {c, d}
    assert shown("from=2026-02-11&to=2026-02-11") == {c, d}
    assert shown("from=2026-02-12") == {b}
    assert shown("actor=nobody") == set()
    # Paging keeps the filters.
    assert "before=" not in client.get("/audit?actor=erin").get_data(as_text=True)


def test_a_bad_date_is_a_sentence_not_a_500(app, history):
    response = signed_in(app, "vic").get("/audit?from=yesterday")
    assert response.status_code == 400
    assert "is not a date like 2026-03-01" in response.get_data(as_text=True)
    assert signed_in(app, "vic").get("/audit?before=abc").status_code == 400
    # Beyond any id (2^63 overflowed SQLite's driver, 2^31 PostgreSQL's integer): a sentence.
    for huge in (2**63, 2**31):
        page = signed_in(app, "vic").get(f"/audit?before={huge}")
        assert page.status_code == 400
        assert "is out of range: it must be between 1 and" in page.get_data(as_text=True)


def test_htmx_filter_gets_the_rows_fragment(app, history):
    add("environment.lock", "rita", datetime(2026, 2, 10, tzinfo=UTC), history.project.id)
    response = signed_in(app, "vic").get("/audit?action=environment.lock",
                                         headers={"HX-Request": "true", "HX-Target": "audit-log"})
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="audit-log">') and "<html" not in html
    assert "HX-Request" in response.headers["Vary"]


def test_before_and_after_are_shown_compactly_and_nothing_can_be_changed(app, history):
    db.session.add(AuditEvent(action="environment.lock", actor="rita", target="environment:demo/qa",
                              before={"locked": False}, after={"locked": True, "lock_reason": "x"}))
    db.session.commit()
    client = signed_in(app, "vic")
    html = client.get("/audit").get_data(as_text=True)
    assert '<code class="json">{&#34;locked&#34;: false}</code>' in html
    assert '{&#34;lock_reason&#34;: &#34;x&#34;, &#34;locked&#34;: true}' in html
    assert client.post("/audit").status_code in (400, 405)
    assert "<form method=\"post\"" not in html.split("<main")[1]


def test_a_remote_url_with_credentials_in_an_old_row_is_redacted_for_a_viewer(app, history):
    """Rows written before URLs were redacted at record time hold the credentials: the page and
    the API still show them to nobody (issue 9, finding 3)."""
    secret_url = "https://deploy:hunter2-t0ken@git.example.com/shop.git"
    token_url = "https://ghp_0123456789abcdef@git.example.com/shop.git"
    event = AuditEvent(action="project.update", actor="cli", target=f"project:demo {token_url}",
                       project_id=history.project.id, before={"remote_url": "/srv/shop.git"},
                       after={"remote_url": secret_url, "nested": [token_url]},
                       detail=f"remote changed to {secret_url}")
    db.session.add(event)
    db.session.commit()
    client = signed_in(app, "vic")
    html = client.get("/audit").get_data(as_text=True)
    body = client.get("/api/v1/audit?action=project.update",
                      headers=history.demo.headers("vic")).get_json()
    shown = next(e for e in body["events"] if e["id"] == event.id)
    for text in (html, str(body)):
        assert "hunter2-t0ken" not in text and "ghp_0123456789abcdef" not in text
        assert "deploy:" not in text
    assert "https://***@git.example.com/shop.git" in html
    assert shown["after"] == {"remote_url": "https://***@git.example.com/shop.git",
                              "nested": ["https://***@git.example.com/shop.git"]}
    assert shown["detail"] == "remote changed to https://***@git.example.com/shop.git"
    assert shown["target"] == "project:demo https://***@git.example.com/shop.git"
    assert shown["before"] == {"remote_url": "/srv/shop.git"}
