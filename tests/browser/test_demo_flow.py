"""The demo flow a newcomer clicks through, in real Chromium against the app as `make run` starts
it: cut → qa → beta refused → no-go with a bug → hotfix → qa → go → beta → go → prod."""

from __future__ import annotations

import re
import subprocess
import time

from playwright.sync_api import expect

CARD = "#board .card[data-version='{v}']"


def card(page, version):
    return page.locator(CARD.format(v=version))


def wait_in_column(page, version, column, timeout=60):
    """Wait until the release's card sits in a column (the board refreshes itself)."""
    expect(page.locator(f"#column-{column} .card[data-version='{version}']")).to_have_count(
        1, timeout=timeout * 1000)


def wait_tagged(page, version, timeout=60):
    expect(card(page, version)).to_have_class(re.compile(r"\brelease-state-tagged\b"),
                                              timeout=timeout * 1000)


def deploy(page, version, env):
    """Open the promote panel from the card, read from → to, confirm."""
    card(page, version).get_by_role("button", name=f"{'Deploy to' if env == 'qa' else 'Promote →'} {env}").click()
    panel = page.locator("#panel")
    panel.get_by_role("button", name=f"{version} to {env}").wait_for()
    text = panel.inner_text()
    panel.get_by_role("button", name=f"{version} to {env}").click()
    return text


def decide(page, version, decision, comment, bugs=""):
    card(page, version).get_by_role("button", name="Go / no-go").click()
    panel = page.locator("#panel")
    panel.get_by_role("button", name="Record decision").wait_for()
    panel.locator(f"input[name=decision][value='{decision}']").check()
    panel.locator("textarea[name=comment]").fill(comment)
    if bugs:
        panel.locator("input[name=bugs]").fill(bugs)
    panel.get_by_role("button", name="Record decision").click()


def test_the_demo_flow_in_a_browser(page_for, live_server):
    started = time.monotonic()
    engineer = page_for("engineer")
    qa = page_for("qa")
    release = page_for("release")

    # Cut 1.3.0 from main: the panel says what the cut makes before the click.
    engineer.click("#cut-button")
    preview = engineer.locator("#cut-preview")
    preview.wait_for()
    assert "1.3.0" in preview.inner_text() and "v1.3.0" in preview.inner_text()
    engineer.locator("#panel").get_by_role("button", name="Cut 1.3.0").click()
    card(engineer, "1.3.0").wait_for()
    wait_tagged(engineer, "1.3.0")

    # Deploy to qa: the panel shows from → to and what changes.
    shown = deploy(engineer, "1.3.0", "qa")
    assert "1.3.0" in shown
    wait_in_column(engineer, "1.3.0", "qa")
    deployed = (live_server["instance"] / "demo" / "deployed" / "qa").read_text().strip()
    assert deployed == "v1.3.0"

    # Promoting to beta is refused, with the reason, before anything is posted.
    card(engineer, "1.3.0").get_by_role("button", name="Promote → beta").click()
    engineer.locator("#panel", has_text="beta needs a go from qa for 1.3.0").wait_for()
    assert engineer.locator("#panel").get_by_role("button", name="1.3.0 to beta").is_disabled()

    # QA says no-go with a bug; the card shows it.
    qa.reload()
    decide(qa, "1.3.0", "no-go", "Refund totals are off by a cent", "PAY-42")
    qa.locator("#board .card[data-version='1.3.0']", has_text="PAY-42").wait_for()
    assert "no-go" in card(qa, "1.3.0").inner_text()

    # Hotfix with the fix that waits on its branch.
    origin = live_server["instance"] / "demo" / "origin.git"
    fix = subprocess.run(["git", "rev-parse", "refs/heads/fix/PAY-42-rounding"], cwd=origin, check=True,
                         capture_output=True, text=True).stdout.strip()
    engineer.goto(live_server["url"] + "/releases/demo/1.3.0/hotfix")
    engineer.locator("input[name=extra]").fill(fix)
    engineer.get_by_role("button", name="Start hotfix").click()
    engineer.wait_for_url("**/releases/demo/1.3.1**")
    engineer.goto(live_server["url"] + "/")
    wait_tagged(engineer, "1.3.1")

    # The hotfix goes to qa, gets its own go, then beta, a go there, then prod.
    deploy(engineer, "1.3.1", "qa")
    wait_in_column(engineer, "1.3.1", "qa")
    qa.reload()
    decide(qa, "1.3.1", "go", "Totals correct now")
    engineer.reload()
    deploy(engineer, "1.3.1", "beta")
    wait_in_column(engineer, "1.3.1", "beta")
    qa.reload()
    decide(qa, "1.3.1", "go", "Sanity check on beta passed")
    release.reload()
    deploy(release, "1.3.1", "prod")
    wait_in_column(release, "1.3.1", "prod")
    assert (live_server["instance"] / "demo" / "deployed" / "prod").read_text().strip() == "v1.3.1"
    print(f"\ndemo flow in Chromium: {time.monotonic() - started:.1f} s")
