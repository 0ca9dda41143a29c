"""The whole app as `make run` starts it (web + worker + embedded Redis, demo project), in a
temporary instance folder, driven by Debian's real Chromium through Playwright."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def running_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`python -m relapp.run` on a free port; yields its URL, stops it with SIGTERM afterwards."""
    instance = tmp_path_factory.mktemp("instance")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env.update({"RELAPP_INSTANCE": str(instance), "PORT": str(port), "RELAPP_DEMO": "1",
                "RELAPP_DEMO_STEP_SECONDS": "0.2", "PYTHONUNBUFFERED": "1"})
    log = open(instance / "run.log", "w")  # noqa: SIM115 - closed below
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "relapp.run"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/login", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    else:
        proc.kill()
    startup = time.monotonic() - started
    print(f"\nrelapp.run served its first page after {startup:.1f} s")
    try:
        assert proc.poll() is None, (instance / "run.log").read_text()[-3000:]
        yield {"url": url, "instance": instance, "proc": proc, "startup": startup}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page_for(browser: Any, running_app: dict[str, Any]) -> Iterator[Any]:
    """A function making a signed-in page for a demo user."""
    contexts = []

    def make(username: str) -> Any:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(running_app["url"] + "/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_url(running_app["url"] + "/")
        return page

    yield make
    for context in contexts:
        context.close()
