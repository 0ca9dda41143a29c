"""Webhook driver and signatures, against real HTTP servers on 127.0.0.1 only."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from relapp.drivers import DeployContext, DriverConfigError, Outcome, build_driver, sign, verify
from relapp.drivers.webhook import WebhookDriver

SECRET = "whsec-0123456789abcdef"


@dataclass
class Server:
    """A local HTTP server that records requests and answers with a configured response."""

    httpd: ThreadingHTTPServer
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: threading.Event | None = None  # when set, the handler waits for it before answering
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/deploy"


def start_server() -> Server:
    server: Server

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            server.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
            )
            if server.delay is not None:
                server.delay.wait(10)
            self.send_response(server.status)
            for name, value in server.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(server.body)))
            self.end_headers()
            self.wfile.write(server.body)

        do_GET = do_POST  # a followed 302 would arrive as GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server = Server(httpd)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.delay is not None:
            server.delay.set()
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def server(servers: list[Server]) -> Server:
    servers.append(start_server())
    return servers[-1]


CTX = DeployContext(
    deployment_id=7,
    attempt=2,
    project="shop",
    environment="beta",
    version="2.0.1",
    tag="v2.0.1",
    sha="89abcdef0123456789abcdef0123456789abcdef",
    callback_url="https://relapp.example/api/deployments/7/report",
)


def run(driver: Any, stop: bool = False) -> tuple[Any, list[str]]:
    lines: list[str] = []
    result = driver.run(CTX, lines.append, lambda: stop)
    return result, lines


def webhook(url: str, **settings: Any) -> Any:
    return build_driver({"kind": "webhook", "url": url, "secret": SECRET, **settings})


def test_local_target_is_blocked_without_allow_hosts(server: Server) -> None:
    result, _ = run(webhook(server.url))
    assert result.outcome is Outcome.FAILED
    assert "loopback" in result.message
    assert server.requests == []


def test_allowed_target_receives_a_signed_compact_body(server: Server) -> None:
    result, lines = run(webhook(server.url, allow_hosts=[f"127.0.0.1:{server.port}"]))
    assert result.outcome is Outcome.WAITING, lines
    [request] = server.requests
    body = request["body"]
    assert body == (
        b'{"attempt":2,"callback_url":"https://relapp.example/api/deployments/7/report",'
        b'"deployment_id":7,"environment":"beta","project":"shop",'
        b'"sha":"89abcdef0123456789abcdef0123456789abcdef","tag":"v2.0.1","version":"2.0.1"}'
    )
    headers = request["headers"]
    assert verify(SECRET, body, headers["X-Relapp-Signature-256"])
    assert not verify("another-secret-value", body, headers["X-Relapp-Signature-256"])
    assert headers["Content-Type"] == "application/json"
    assert uuid.UUID(headers["X-Relapp-Delivery"])
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert request["path"] == "/hooks/deploy"
    assert not any(SECRET in line for line in lines)


def test_wait_false_makes_a_2xx_a_success(server: Server) -> None:
    server.status = 200
    result, _ = run(webhook(server.url, allow_hosts=[f"127.0.0.1:{server.port}"], wait=False))
    assert result.outcome is Outcome.SUCCEEDED
    assert "200" in result.message


def test_connection_goes_to_the_checked_address_with_the_configured_host(server: Server) -> None:
    # The name does not exist in DNS: the request can only arrive if the driver connects to the
    # address its own check resolved, which is what defeats DNS rebinding.
    host = f"ci.relapp-test.invalid:{server.port}"
    driver = WebhookDriver(
        f"http://{host}/hooks/deploy?team=payments",
        SECRET,
        allow_hosts=[host],
        resolver=lambda name, port: ["127.0.0.1"],
    )
    result, lines = run(driver)
    assert result.outcome is Outcome.WAITING, lines
    [request] = server.requests
    assert request["headers"]["Host"] == host
    assert request["path"] == "/hooks/deploy?team=payments"
    assert "team=payments" not in "\n".join(lines)  # a query may carry a token; not logged


def test_name_resolving_to_a_private_address_is_never_contacted() -> None:
    driver = WebhookDriver(
        "https://ci.relapp-test.invalid/hook", SECRET, resolver=lambda name, port: ["10.0.0.5"]
    )
    result, _ = run(driver)
    assert result.outcome is Outcome.FAILED
    assert "10.0.0.5" in result.message and "private" in result.message


def test_non_2xx_fails_with_the_status_and_a_masked_body_snippet(server: Server) -> None:
    server.status = 500
    server.body = f"boom\nsecret was {SECRET}\n".encode()
    result, lines = run(webhook(server.url, allow_hosts=[f"127.0.0.1:{server.port}"]))
    assert result.outcome is Outcome.FAILED
    assert "500" in result.message
    assert "  boom" in lines
    assert "  secret was ****" in lines
    assert not any(SECRET in line for line in lines)


@pytest.mark.parametrize("status", [302, 307])
def test_redirect_to_a_target_that_is_not_allowed_is_not_followed(
    servers: list[Server], status: int
) -> None:
    first, other = start_server(), start_server()
    servers.extend([first, other])
    first.status = status
    first.headers = {"Location": f"http://127.0.0.1:{other.port}/internal"}
    result, _ = run(webhook(first.url, allow_hosts=[f"127.0.0.1:{first.port}"]))
    assert result.outcome is Outcome.FAILED
    assert str(status) in result.message and "redirect" in result.message
    assert len(first.requests) == 1
    assert other.requests == []


def test_slow_target_fails_after_the_timeout(server: Server) -> None:
    server.delay = threading.Event()
    driver = webhook(server.url, allow_hosts=[f"127.0.0.1:{server.port}"], timeout=0.5)
    result, _ = run(driver)
    assert result.outcome is Outcome.FAILED
    assert result.message == "The webhook did not answer within 0.5 s."


def test_refused_connection_fails_with_a_sentence() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result, _ = run(webhook(f"http://127.0.0.1:{port}/", allow_hosts=[f"127.0.0.1:{port}"]))
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith("The webhook request to http://127.0.0.1:")


def test_stop_before_sending_sends_nothing(server: Server) -> None:
    result, _ = run(webhook(server.url, allow_hosts=[f"127.0.0.1:{server.port}"]), stop=True)
    assert result.outcome is Outcome.FAILED
    assert result.message == "stopped"
    assert server.requests == []


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"url": "https://ci.example/hook"}, "'secret'"),
        ({"url": "https://ci.example/hook", "secret": ""}, "'secret'"),
        ({"url": "https://ci.example/hook", "secret": "short"}, "'secret'"),
        ({"url": "ftp://ci.example/hook", "secret": SECRET}, "'url'"),
        ({"url": "https://user:pw@ci.example/hook", "secret": SECRET}, "'url'"),
        ({"url": "https://ci.example:99999/", "secret": SECRET}, "'url'"),
        ({"secret": SECRET}, "'url'"),
        ({"url": "https://ci.example/", "secret": SECRET, "wait": "yes"}, "'wait'"),
        ({"url": "https://ci.example/", "secret": SECRET, "timeout": -1}, "'timeout'"),
        ({"url": "https://ci.example/", "secret": SECRET, "allow_hosts": "x"}, "'allow_hosts'"),
        ({"url": "https://ci.example/", "secret": SECRET, "headers": {}}, "'headers'"),
    ],
)
def test_bad_webhook_settings_are_refused_naming_the_key(
    settings: dict[str, Any], key: str
) -> None:
    with pytest.raises(DriverConfigError, match=key):
        build_driver({"kind": "webhook", **settings})


BODY = json.dumps({"deployment_id": 7, "status": "succeeded"}).encode()


def test_sign_and_verify_round_trip() -> None:
    header = sign(SECRET, BODY)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify(SECRET, BODY, header)
    assert verify(SECRET, BODY, header.upper().replace("SHA256=", "sha256="))


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        ("", BODY, sign("", BODY)),  # no secret configured: fail closed
        (SECRET, BODY, None),
        (SECRET, BODY, ""),
        (SECRET, BODY + b" ", sign(SECRET, BODY)),
        ("other-secret-0000", BODY, sign(SECRET, BODY)),
        (SECRET, BODY, sign(SECRET, BODY).replace("sha256=", "sha1=")),
        (SECRET, BODY, sign(SECRET, BODY).removeprefix("sha256=")),
        (SECRET, BODY, sign(SECRET, BODY)[:-1]),
        (SECRET, BODY, sign(SECRET, BODY)[:-1] + "g"),
        (SECRET, BODY, sign(SECRET, BODY)[:-1] + "é"),
        (SECRET, BODY, sign(SECRET, BODY) + "00"),
    ],
)
def test_verify_rejects(secret: str, body: bytes, header: str | None) -> None:
    assert verify(secret, body, header) is False
