"""A git remote over HTTP that requires Basic auth: `git http-backend` (real smart HTTP) run as a
CGI program by a small threaded http.server on loopback.

Every request is recorded (method, path, whether it carried the right credentials) so a test can
show that the credentials went in the Authorization header and nowhere else.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HTTP_BACKEND = Path(
    subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
) / "git-http-backend"


@dataclass
class AuthRemote:
    """The server's address and what it saw."""

    root: Path
    user: str
    password: str
    port: int = 0
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # method, path, authorised

    def url(self, name: str = "origin.git") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def authorised(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"


def _handler(remote: AuthRemote) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            ok = remote.authorised(self.headers.get("Authorization"))
            remote.requests.append((self.command, self.path, ok))
            if not ok:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(remote.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": remote.user,  # receive-pack (push) is served to an authenticated user
                "REMOTE_ADDR": "127.0.0.1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": "/dev/null",
            }
            for header, var in (("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                                ("Git-Protocol", "GIT_PROTOCOL")):
                if self.headers.get(header):
                    env[var] = self.headers[header]
            proc = subprocess.run([str(HTTP_BACKEND)], input=body, env=env, capture_output=True,
                                  check=False, timeout=60)
            head, _, payload = proc.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = proc.stdout.partition(b"\n\n")
            status = 200
            headers: list[tuple[str, str]] = []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextmanager
def serving(root: Path, user: str, password: str) -> Iterator[AuthRemote]:
    """Serve the bare repositories under root on a free loopback port until the block ends."""
    remote = AuthRemote(root=root, user=user, password=password)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(remote))
    server.daemon_threads = True
    remote.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield remote
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
