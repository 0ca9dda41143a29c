"""Job log lines: appended to the database (the record) and to a Redis stream (the live feed);
read back for replay, and formatted as Server-Sent Events."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .domain.secretmask import MIN_SECRET, SecretMasker, redact_urls
from .embedded import EmbeddedRedisError
from .extensions import db, get_redis
from .models import Job, JobLogLine, installation_uid, utcnow

log = logging.getLogger(__name__)

MAX_LINE = 4000
MAX_LINES_PER_JOB = 20_000
STREAM_TTL = 24 * 3600


def stream_key(job_id: int) -> str:
    """The Redis stream of a job's live lines, per installation (job ids repeat across them)."""
    return f"relapp:{installation_uid()}:joblog:{job_id}"


@dataclass(frozen=True)
class LogLine:
    seq: int
    at: datetime
    line: str


class JobLog:
    """Appends lines of one job; each line is committed at once so a crash loses nothing written.

    Every line is masked before it is stored or published: URL credentials, and the secrets
    given (with what a script may print of them: runs of 8+ characters of a long secret, its
    base64 forms; see `relapp.domain.secretmask`). The masker is built once, when the secrets
    are set.
    """

    def __init__(self, job_id: int, secrets: Iterable[str] = ()) -> None:
        self.job_id = job_id
        self.secrets = list(secrets)
        last = db.session.scalar(select(func.max(JobLogLine.seq)).where(JobLogLine.job_id == job_id))
        self.seq = last or 0

    @property
    def secrets(self) -> list[str]:
        """The secrets this log masks; setting them builds the masker once."""
        return self._secrets

    @secrets.setter
    def secrets(self, values: Iterable[str]) -> None:
        self._secrets = [s for s in values if isinstance(s, str) and len(s) >= MIN_SECRET]
        self._masker = SecretMasker(self._secrets)

    def mask(self, line: str) -> str:
        return redact_urls(self._masker(line))

    def __call__(self, line: str) -> None:
        self.write(line)

    def write(self, line: str) -> None:
        """Store one line (masked, capped) in the database, then publish it to Redis."""
        if self.seq >= MAX_LINES_PER_JOB:
            return
        line = self.mask(line.rstrip("\n"))
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE] + " …[line cut]"
        self.seq += 1
        if self.seq == MAX_LINES_PER_JOB:
            line = "…[log cut: too many lines]"
        at = utcnow()
        # A separate connection keeps log lines out of the job's own transaction. Another process
        # (a CD system's report, the reaper) may have written the next number: take the one after.
        for _attempt in range(5):
            try:
                with db.engine.begin() as conn:
                    conn.execute(JobLogLine.__table__.insert().values(
                        job_id=self.job_id, seq=self.seq, at=at, line=line))
                break
            except IntegrityError:
                with db.engine.connect() as conn:
                    last = conn.execute(select(func.max(JobLogLine.seq)).where(JobLogLine.job_id == self.job_id)).scalar()
                self.seq = (last or 0) + 1
        publish(self.job_id, {"type": "line", "seq": self.seq, "at": at.isoformat(), "line": line})


def publish(job_id: int, event: dict[str, object]) -> None:
    """Push an event to the job's Redis stream; a Redis outage only loses the live feed."""
    try:
        redis = get_redis()
        key = stream_key(job_id)
        redis.xadd(key, {"data": json.dumps(event)}, maxlen=MAX_LINES_PER_JOB + 100, approximate=True)
        redis.expire(key, STREAM_TTL)
    except (RedisError, OSError, EmbeddedRedisError) as exc:
        log.warning("job %s: live log unavailable (%s); the line is kept in the database", job_id, exc.__class__.__name__)


def lines(job_id: int, after: int = 0) -> list[LogLine]:
    """The stored lines of a job after sequence number `after`."""
    rows = db.session.scalars(select(JobLogLine).where(JobLogLine.job_id == job_id, JobLogLine.seq > after)
                              .order_by(JobLogLine.seq)).all()
    return [LogLine(row.seq, row.at, row.line) for row in rows]


def sse(event: str, data: object, event_id: int | None = None) -> str:
    """One Server-Sent Event."""
    payload = data if isinstance(data, str) else json.dumps(data)
    out = ""
    if event_id is not None:
        out += f"id: {event_id}\n"
    out += f"event: {event}\n"
    for part in payload.split("\n"):
        out += f"data: {part}\n"
    return out + "\n"


def finished(job: Job) -> bool:
    return job.status in ("succeeded", "failed", "cancelled")
