"""The release kanban: columns and cards, the htmx fragment, and the card actions (cut, deploy /
promote, go / no-go) through the real services, jobs and worker."""

from __future__ import annotations

from sqlalchemy import select

from relapp.extensions import db
from relapp.models import Decision, Deployment, Release
from tests.conftest import work_queue

from .conftest import column_of, counts, signed_in, token

HX = {"HX-Request": "true"}


def deploy(client, version, env, **form):
    return client.post(f"/releases/demo/{version}/deployments", headers={**HX, "X-CSRFToken": token(client)},
                       data={"env": env, **form})


def decide(client, version, env, decision, comment="", bugs=""):
    return client.post(f"/releases/demo/{version}/decisions", headers={**HX, "X-CSRFToken": token(client)},
                       data={"env": env, "decision": decision, "comment": comment, "bugs": bugs})


def test_board_has_a_column_per_stage_and_the_cut_release_in_cut(app, released):
    client = signed_in(app, "vic")
    html = client.get("/").get_data(as_text=True)
    for stage in ("cut", "qa", "beta", "prod"):
        assert f'id="column-{stage}"' in html
    assert column_of(html, "1.3.0") == "cut"
    assert "v1.3.0" in html and 'class="badge pending">pending' in html
    # Adopted releases that 1.3.0 superseded are retired from the board, and can be shown.
    assert column_of(html, "1.1.0") is None and "retired releases hidden" in html
    assert column_of(client.get("/?all=1").get_data(as_text=True), "1.1.0") == "cut"
    # A viewer is offered no action.
    assert "Cut a release" not in html and "Deploy to qa" not in html and "Go / no-go" not in html
    engineer = signed_in(app, "erin").get("/").get_data(as_text=True)
    assert "Cut a release" in engineer and "Deploy to qa" in engineer
    assert 'data-promote-url="/releases/demo/1.3.0/promote?env=qa"' in engineer


def test_htmx_asks_for_the_board_fragment_only(app, released):
    client = signed_in(app, "vic")
    response = client.get("/?project=demo", headers={**HX, "HX-Target": "board"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="board"') and "<html" not in body
    # It refreshes when the /events doorbell names its project (live.js), never on a timer.
    assert 'hx-trigger="live, board-changed from:body"' in body and 'data-live="project:' in body
    assert "HX-Request" in response.headers["Vary"]
    full = client.get("/?project=demo")
    assert "<html" in full.get_data(as_text=True) and "HX-Request" in full.headers["Vary"]


def test_the_board_url_gives_the_whole_page_to_history_restores_boosts_and_other_targets(app, released):
    client = signed_in(app, "vic")
    for headers in ({**HX, "HX-History-Restore-Request": "true"}, {**HX, "HX-Target": "panel"},
                    {**HX, "HX-Boosted": "true", "HX-Target": "board"}):
        response = client.get("/?project=demo", headers=headers)
        assert response.status_code == 200
        assert "<html" in response.get_data(as_text=True), headers
        assert "HX-Request" in response.vary and "HX-Target" in response.vary


def test_cut_button_cuts_for_an_engineer_and_is_refused_to_a_viewer(app, released):
    released.commit_on_main("services/search/new.txt", "x\n", "feat(search): fuzzy matching (#1001)")
    viewer = signed_in(app, "vic")
    before = counts()
    refused = viewer.post("/releases/demo", headers={**HX, "X-CSRFToken": token(viewer)}, data={})
    assert refused.status_code == 403
    assert "engineer role" in refused.get_data(as_text=True) and refused.headers["HX-Retarget"] == "#alerts"
    assert viewer.get("/releases/demo/cut", headers=HX).status_code == 403
    engineer = signed_in(app, "erin")
    assert engineer.post("/releases/demo", data={}).status_code == 400  # no CSRF token
    assert counts() == before
    form = engineer.get("/releases/demo/cut", headers=HX).get_data(as_text=True)
    assert 'hx-post="/releases/demo"' in form and "<html" not in form
    response = engineer.post("/releases/demo", headers={**HX, "X-CSRFToken": token(engineer)}, data={})
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "board-changed"
    assert "Cutting 1.4.0: tagging v1.4.0." in response.get_data(as_text=True)
    work_queue()
    release = db.session.scalar(select(Release).where(Release.version == "1.4.0"))
    assert release.state == "tagged" and release.created_by.username == "erin"
    # A major cut asked for by hand needs a reason: the service's sentence comes back.
    released.commit_on_main("services/search/more.txt", "y\n", "fix(search): typo (#1002)")
    again = engineer.post("/releases/demo", headers={**HX, "X-CSRFToken": token(engineer)}, data={"major": "1"})
    assert again.status_code in (400, 409) and "reason" in again.get_data(as_text=True)


def test_promote_panel_shows_from_to_and_the_changelog_before_deploying(app, released):
    client = signed_in(app, "erin")
    panel = client.get("/releases/demo/1.3.0/promote?env=qa", headers=HX)
    html = panel.get_data(as_text=True)
    assert panel.status_code == 200 and "<html" not in html
    assert 'class="from">nothing yet<' in html and 'class="to">1.3.0<' in html
    assert "changes since 1.2.0" in html and "cl-entries" in html
    assert 'hx-post="/releases/demo/1.3.0/deployments"' in html and "disabled" not in html
    page = client.get("/releases/demo/1.3.0/promote?env=qa")
    assert "<html" in page.get_data(as_text=True)


def test_deploy_from_the_card_runs_and_the_card_moves_to_qa(app, released):
    client = signed_in(app, "erin")
    response = deploy(client, "1.3.0", "qa")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["HX-Trigger"] == "board-changed"
    body = response.get_data(as_text=True)
    assert "Deploy of 1.3.0 to qa is queued." in body and "/jobs/" in body
    board = client.get("/").get_data(as_text=True)
    assert "queued → qa" in board and "live log" in board
    work_queue()
    deployment = db.session.scalar(select(Deployment))
    assert deployment.status == "succeeded" and deployment.requested_by.username == "erin"
    board = client.get("/").get_data(as_text=True)
    assert column_of(board, "1.3.0") == "qa" and "runs in qa" in board
    assert "Promote → beta" in board


def test_a_refused_promote_shows_the_refusal_sentence(app, released):
    client = signed_in(app, "erin")
    deploy(client, "1.3.0", "qa")
    work_queue()
    sentence = "beta needs a go from qa for 1.3.0; qa has not decided yet."
    panel = client.get("/releases/demo/1.3.0/promote?env=beta", headers=HX).get_data(as_text=True)
    assert "This deploy would be refused" in panel and sentence[:-1] in panel
    assert "disabled" in panel
    before = counts()
    response = deploy(client, "1.3.0", "beta")
    assert response.status_code == 409
    assert response.headers["HX-Retarget"] == "#alerts"
    assert sentence in response.get_data(as_text=True)
    assert counts() == before
    # A rollback asks for a reason in the panel, and the service insists on it.
    released.commit_on_main("services/search/b.txt", "b\n", "fix(search): b (#1003)")
    from relapp.services import releases as svc
    from relapp.services.projects import get_project

    from .conftest import user

    svc.cut(get_project("demo"), user("erin"))
    work_queue()
    deploy(client, "1.4.0", "qa")
    work_queue()
    rollback = client.get("/releases/demo/1.3.0/promote?env=qa", headers=HX).get_data(as_text=True)
    assert 'class="from">1.4.0<' in rollback and "dir-rollback" in rollback and 'name="rollback_reason"' in rollback
    assert "What leaves qa" in rollback and "fix(search)" not in rollback and "search:</span> b" in rollback
    refused = deploy(client, "1.3.0", "qa")
    assert refused.status_code == 409 and "deploying it is a rollback, so give a reason" in refused.get_data(as_text=True)
    assert deploy(client, "1.3.0", "qa", rollback_reason="1.4.0 breaks search").status_code == 200


def test_go_no_go_form_records_and_the_card_shows_qa_state_and_bugs(app, released):
    engineer = signed_in(app, "erin")
    deploy(engineer, "1.3.0", "qa")
    work_queue()
    qa = signed_in(app, "quinn")
    board = qa.get("/").get_data(as_text=True)
    assert "Go / no-go" in board
    form = qa.get("/releases/demo/1.3.0/decide?env=qa", headers=HX).get_data(as_text=True)
    assert 'name="decision" value="no-go"' in form and 'name="bugs"' in form and "<html" not in form
    before = counts()
    missing = decide(qa, "1.3.0", "qa", "no-go")
    assert missing.status_code == 400 and "a no-go needs a comment saying why." in missing.get_data(as_text=True)
    forbidden = decide(engineer, "1.3.0", "qa", "go")
    assert forbidden.status_code == 403 and "may not decide on releases in qa" in forbidden.get_data(as_text=True)
    bad_key = decide(qa, "1.3.0", "qa", "no-go", "broken", "NOPE-1")
    assert bad_key.status_code == 400 and "is not an issue key" in bad_key.get_data(as_text=True)
    assert counts() == before
    recorded = decide(qa, "1.3.0", "qa", "no-go", "Refunds are off by a cent", "PAY-42, PAY-43")
    assert recorded.status_code == 200 and recorded.headers["HX-Trigger"] == "board-changed"
    decision = db.session.scalar(select(Decision))
    assert (decision.decision, decision.bugs, decision.by.username) == ("no-go", ["PAY-42", "PAY-43"], "quinn")
    board = qa.get("/").get_data(as_text=True)
    assert 'QA <span class="badge no-go">no-go</span>' in board
    assert "2 bugs:" in board and 'href="https://jira.example.com/browse/PAY-42"' in board
    # A go afterwards counts; the card says so and carries no bugs any more.
    assert decide(qa, "1.3.0", "qa", "go", "fixed by config").status_code == 200
    board = qa.get("/").get_data(as_text=True)
    assert 'QA <span class="badge go">go</span>' in board and "2 bugs:" not in board


def test_a_failed_deploy_offers_a_retry_that_opens_the_promote_panel(app, released):
    from relapp.models import Environment

    env = db.session.scalar(select(Environment).where(Environment.name == "qa"))
    env.driver = {**env.driver, "argv": [env.driver["argv"][0], "-c", "import sys; print('boom'); sys.exit(3)"]}
    db.session.commit()
    client = signed_in(app, "erin")
    deploy(client, "1.3.0", "qa")
    work_queue()
    board = client.get("/").get_data(as_text=True)
    assert "deploy to qa failed" in board
    assert 'hx-get="/releases/demo/1.3.0/promote?env=qa"' in board and "Retry qa" in board


def test_board_shows_the_next_scheduled_cut_of_the_release_train(app, released):
    from datetime import UTC, datetime

    from relapp.models import Project
    from relapp.services import train

    project = db.session.scalar(select(Project))
    assert project.train_cron == "0 10 * * MON"
    slot = train.upcoming(project)
    html = signed_in(app, "vic").get("/").get_data(as_text=True)
    local = slot.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert f"next scheduled cut {local.strftime('%a %d %b %H:%M %Z')}" in html
    assert local.strftime("%a %H:%M") == "Mon 10:00" and slot > datetime.now(UTC)
