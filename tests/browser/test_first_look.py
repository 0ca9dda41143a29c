"""A newcomer's first minute: the app started as `make run` starts it, signed in with Chromium."""

from __future__ import annotations

import re

import pytest

# Both tests share one module-scoped live server: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("browser-first-look")


def test_qa_signs_in_and_sees_the_demo_board(page_for, live_server):
    page = page_for("qa")
    assert "Demo shop" in page.inner_text("h1")
    columns = [c.lower() for c in page.locator(".column h2 span:first-child").all_inner_texts()]
    assert columns == ["cut", "qa", "beta", "prod"]
    # The adopted legacy tags are on the board already.
    cards = page.locator(".card").all_inner_texts()
    assert any("1.2.0" in c and "rel_1_2_0" in c for c in cards)
    assert re.search(r"qa · qa", page.inner_text("#whoami"))


def test_a_wrong_password_is_a_clear_sentence(browser, live_server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(live_server["url"] + "/login")
    page.fill("input[name=username]", "qa")
    page.fill("input[name=password]", "nope")
    page.click("button[type=submit]")
    assert "Wrong username or password." in page.inner_text("#alerts")
    context.close()
