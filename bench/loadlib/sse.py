"""Open SSE streams cheaply: one asyncio process holds a share of the streams on raw sockets
(HTTP/1.1, chunked or close-delimited), so that hundreds of idle streams cost the client almost
nothing and the client is not what the bench measures.

Each stream records its time to first byte (request written -> first response byte), the time
of its `hello`, and for each topic the wall-clock times (time.time(), comparable across
processes) at which a `change` naming it arrived. A stream the server ends is opened again with
`Last-Event-ID`, as a browser does; each opening's first byte is measured.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamResult:
    ttfb: list[float] = field(default_factory=list)  # seconds, one per opening
    hello: list[float] = field(default_factory=list)
    topics: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    events: int = 0
    resyncs: int = 0
    reopened: int = 0
    opened_at: float = 0.0  # wall clock of the first successful opening
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        return {"ttfb": self.ttfb, "hello": self.hello, "topics": dict(self.topics),
                "events": self.events, "resyncs": self.resyncs, "reopened": self.reopened,
                "opened_at": self.opened_at, "errors": dict(self.errors)}


async def _stream(host: str, port: int, path: str, cookie: str, user_agent: str, start: float,
                  stop: float, result: StreamResult) -> None:
    await asyncio.sleep(max(0.0, start - time.time()))
    last_id = ""
    while time.time() < stop:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
            headers = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", f"Cookie: {cookie}",
                       f"User-Agent: {user_agent}", "Accept: text/event-stream", "Cache-Control: no-cache"]
            if last_id:
                headers.append(f"Last-Event-ID: {last_id}")
            sent = time.perf_counter()
            writer.write(("\r\n".join(headers) + "\r\n\r\n").encode())
            await writer.drain()
            first = await asyncio.wait_for(reader.read(1), 30)
            if not first:
                result.errors["stream closed before a byte"] += 1
                await asyncio.sleep(1)
                continue
            result.ttfb.append(time.perf_counter() - sent)
            head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            if status != 200:
                result.errors[f"stream HTTP {status}"] += 1
                return  # a refused stream is an error, not something to hammer
            if not result.opened_at:
                result.opened_at = time.time()
            chunked = any(h.lower().startswith("transfer-encoding:") and "chunked" in h.lower()
                          for h in header_lines)
            last_id = await _read_events(reader, chunked, sent, stop, result) or last_id
            if time.time() < stop:
                result.reopened += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if time.time() < stop:
                result.errors[f"stream {type(exc).__name__}"] += 1
                await asyncio.sleep(1)
        finally:
            if writer is not None:
                writer.close()


async def _read_events(reader: asyncio.StreamReader, chunked: bool, sent: float, stop: float,
                       result: StreamResult) -> str:
    """Read events until the server ends the stream or `stop`; return the last event id."""
    buffer = b""
    last_id = ""
    while True:
        timeout = stop - time.time()
        if timeout <= 0:
            return last_id
        try:
            if chunked:
                size_line = await asyncio.wait_for(reader.readline(), timeout)
                if not size_line:
                    return last_id
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return last_id
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await asyncio.wait_for(reader.read(65536), timeout)
                if not data:
                    return last_id
        except TimeoutError:
            return last_id
        now = time.time()
        buffer += data.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            name, payload, ident = "message", [], ""
            for line in block.decode("utf-8", "replace").split("\n"):
                if line.startswith(":"):
                    continue
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    name = value
                elif key == "data":
                    payload.append(value)
                elif key == "id":
                    ident = value
            if ident:
                last_id = ident
            if not payload and name == "message":
                continue  # a retry line or a comment
            if name == "hello":
                result.hello.append(time.perf_counter() - sent)
            elif name == "resync":
                result.resyncs += 1
            elif name == "change":
                result.events += 1
                try:
                    topics = json.loads("\n".join(payload)).get("topics") or []
                except ValueError:
                    result.errors["change event without JSON"] += 1
                    continue
                for topic in topics:
                    result.topics[str(topic)].append(now)


async def _run(host: str, port: int, path: str, plan: list[tuple[str, float]], user_agent: str,
               stop: float) -> list[StreamResult]:
    results = [StreamResult() for _ in plan]
    await asyncio.gather(*(_stream(host, port, path, cookie, user_agent, start, stop, result)
                           for (cookie, start), result in zip(plan, results, strict=True)))
    return results


def stream_process(host: str, port: int, path: str, plan: list[tuple[str, float]], user_agent: str,
                   conn: Any) -> None:
    """A client process: say "ready" through `conn` (a process takes a while to start; streams
    started late would all open at once), receive (base, stop) in wall-clock time, open `plan`'s
    streams (cookie, seconds after base) until `stop`; send the results and this process's CPU
    seconds back."""
    conn.send("ready")
    base, stop = conn.recv()
    cpu0 = time.process_time()
    wall0 = time.time()
    plan = [(cookie, base + offset) for cookie, offset in plan]
    results = asyncio.run(_run(host, port, path, plan, user_agent, stop))
    conn.send({"streams": [r.as_dict() for r in results], "cpu": time.process_time() - cpu0,
               "wall": time.time() - wall0})
    conn.close()
