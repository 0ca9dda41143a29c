"""gunicorn's gevent worker, whose own error answers are problem+json like relapp's.

gunicorn answers requests it refuses before relapp sees them (a request line over
`limit_request_line`, 4094 bytes: 414; a header over `limit_request_field_size`, 8190 bytes, or
more than `limit_request_fields`, 100 headers: 431; malformed HTTP: 400) with a small HTML page.
`ProblemAnswers.handle_error` keeps gunicorn's choice of status, its log line and its access
log entry, and sends the same answer as an RFC 9457 problem+json body with one sentence.

`ProblemGeventWorker` is used by `make run` (relapp.run) and by the production start
(relapp.gunicorn_conf).
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

SENTENCES = {
    400: "The request is not valid HTTP.",
    403: "The request was refused.",
    414: ("The request line (method, address and query string) is longer than the {line} bytes "
          "this server accepts."),
    417: "The server cannot meet the request's Expect header.",
    431: ("The request's headers are too large: at most {fields} headers of at most {field} bytes "
          "each are accepted."),
    500: "Something went wrong on our side; nothing was changed. The error was logged.",
    501: "The request uses a transfer coding this server does not support.",
}


class _Capture:
    """Stands in for the client socket while gunicorn's handle_error runs: what it would send
    is kept, everything else goes to the socket."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _status(sent: bytes) -> tuple[int, str]:
    """(status, reason) from the status line gunicorn wrote: `HTTP/1.1 414 URI Too Long`."""
    line = sent.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    try:
        return int(parts[1]), parts[2] if len(parts) > 2 else ""
    except (IndexError, ValueError):
        return 400, "Bad Request"


def problem_bytes(status: int, reason: str, detail: str) -> bytes:
    """A complete HTTP/1.1 answer carrying a problem+json body; the connection closes after it."""
    body = json.dumps({"type": "about:blank", "title": reason, "status": status,
                       "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class ProblemAnswers:
    """gunicorn's error answers (`handle_error` of every worker class) as problem+json."""

    cfg: Any
    log: Any

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        capture = _Capture(client)
        super().handle_error(req, capture, addr, exc)  # type: ignore[misc]
        if not capture.sent:  # gunicorn sent nothing (it could not): neither do we
            return
        status, reason = _status(capture.sent)
        detail = SENTENCES.get(status, SENTENCES[400] if status < 500 else SENTENCES[500]).format(
            line=self.cfg.limit_request_line, fields=self.cfg.limit_request_fields,
            field=self.cfg.limit_request_field_size)
        try:
            util.write_nonblock(client, problem_bytes(status, reason, detail))
        except OSError:  # the client is gone: as gunicorn does, say so at debug level only
            self.log.debug("Failed to send error message.")


class ProblemGeventWorker(ProblemAnswers, GeventWorker):
    """gunicorn's gevent worker, with problem+json error answers: what `make run` and the
    production start use. A request is a greenlet, not a thread, so an open live stream (mostly
    idle, waiting on Redis) costs a few kilobytes and never holds a thread that a page request
    needs (see the README, "Live pages")."""
