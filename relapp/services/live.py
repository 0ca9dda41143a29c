"""The live doorbell: which pages' regions changed, published to Redis after each commit.

Every process that writes (the web server, the RQ work-horse, the maintenance companion) rings
it through one SQLAlchemy session listener, registered once by `create_app` (`init_app`):

- `after_flush` collects the ORM objects of interest that were added, changed or deleted
  (releases, deployments, decisions, jobs, environments' lock, freeze, unknown and observed
  fields; a hotfix is a release and a job), and maps each to its topics: `project:<id>` (the
  board and the environments page), `release:<id>` (the release page), `job:<id>` (job facts);
- `do_orm_execute` does the same for bulk `session.execute(update(Model)...)` statements, whose
  rows the unit of work never sees: the rows are named by the statement's `id = …` / `id IN …`
  and read back (in the same transaction) once it changed at least one;
- `after_commit` publishes ONE entry per commit to the installation's stream
  (`relapp:<uid>:live`, field `data` = `{"topics": [...]}`, MAXLEN ~ 10000), and each changed
  job's status and each changed deployment's status into that job's own log stream (so the job
  stream follows them without reading the database); `after_rollback` forgets it all.

`notify(*topics)` rings explicitly (a write made on a connection of its own): queued until the
current transaction commits, published at once when none is open. A Redis outage loses only
the doorbell, logged as a warning, never the write. Pages read the stream through `GET /events`
(`follow`); `stream_open(kind)` counts open streams (the metrics' "open streams" gauge).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, BindParameter

from ..embedded import EmbeddedRedisError
from ..extensions import db, get_redis
from ..joblog import MAX_LINES_PER_JOB, STREAM_TTL, sse, stream_key
from ..models import Decision, Deployment, Environment, Installation, Job, Release

log = logging.getLogger(__name__)

MAXLEN = 10_000
RETRY_MS = 2000
BLOCK_MS = 5000  # one XREAD waits at most this long (the deadline and keep-alive are checked between)
KEEPALIVE = 15.0  # seconds of silence before a comment line keeps proxies from closing
_PENDING = "relapp.live.pending"
_RELEASE_PROJECT = "relapp.live.release_project"  # release id -> project id (never changes)
_CACHE_MAX = 50_000

# Columns whose change a page shows; a change of other columns alone (a lease renewal, the
# outbox's enqueued_at, a recorded process group) rings nothing.
WATCHED: dict[type, frozenset[str] | None] = {
    Release: None,  # every column
    Decision: None,
    Deployment: frozenset({"status", "message", "started_at", "finished_at", "waiting_until",
                           "cancel_requested_at", "release_id", "environment_id", "job_id"}),
    Job: frozenset({"status", "error", "started_at", "finished_at", "attempt", "release_id"}),
    Environment: frozenset({"locked", "lock_reason", "frozen", "freeze_reason", "unknown_reason",
                            "unknown_since", "observed_version", "observed_error", "name",
                            "position", "version_url", "driver"}),
}
_BY_TABLE = {model.__table__.name: model for model in WATCHED}  # type: ignore[attr-defined]


# -- what one transaction rang ----------------------------------------------------------------


@dataclass
class Pending:
    """Topics and job-stream events collected in one transaction, published after its commit."""

    topics: set[str] = field(default_factory=set)
    job_events: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def event(self, job_id: int, payload: dict[str, Any]) -> None:
        events = self.job_events.setdefault(job_id, [])
        if payload not in events:
            events.append(payload)

    def __bool__(self) -> bool:
        return bool(self.topics or self.job_events)


def topics(*, project: int | None = None, release: int | None = None,
           job: int | None = None) -> list[str]:
    """The topics of a change: `project:<id>`, `release:<id>`, `job:<id>` (None ones left out)."""
    named = (("project", project), ("release", release), ("job", job))
    return [f"{name}:{value}" for name, value in named if value is not None]


def _pending(session: Session) -> Pending:
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = Pending()
    return pending


def notify(*names: str) -> None:
    """Ring the doorbell for these topics: after the current transaction commits (forgotten if
    it rolls back), or at once when no transaction is open."""
    if not names:
        return
    session = db.session()
    if session.in_transaction():
        _pending(session).topics.update(names)
        _remember_uid(session)
    else:
        publish(Pending(topics=set(names)))


def job_event(job_id: int, payload: dict[str, Any]) -> None:
    """Put an event (`status`, `deployment`) into a job's live log stream after the commit."""
    session = db.session()
    if session.in_transaction():
        _pending(session).event(job_id, payload)
        _remember_uid(session)
    else:
        publish(Pending(job_events={job_id: [payload]}))


# -- mapping rows to topics -------------------------------------------------------------------


def _release_projects(session: Session, release_ids: Iterable[int]) -> dict[int, int]:
    """release id -> project id, from a per-app cache (a release never changes project)."""
    cache: dict[int, int] = current_app.extensions.setdefault(_RELEASE_PROJECT, {})
    wanted = {rid for rid in release_ids if rid is not None}
    missing = [rid for rid in wanted if rid not in cache]
    if missing:
        if len(cache) > _CACHE_MAX:
            cache.clear()
        rows = session.connection().execute(
            select(Release.id, Release.project_id).where(Release.id.in_(missing)))
        cache.update({row.id: row.project_id for row in rows})
    return {rid: cache[rid] for rid in wanted if rid in cache}


def _changed(obj: Any, watched: frozenset[str] | None) -> bool:
    state = inspect(obj)
    names = state.mapper.column_attrs.keys() if watched is None else watched
    return any(state.attrs[name].history.has_changes() for name in names
               if name in state.mapper.column_attrs)


def _value(obj: Any, name: str) -> Any:
    """An attribute's value without loading anything (None when it was never loaded)."""
    return inspect(obj).dict.get(name)


def _collect_objects(session: Session, objects: list[tuple[Any, bool]]) -> None:
    """Topics and job events of flushed objects: (object, whether it is new or deleted)."""
    pending = _pending(session)
    release_ids = [_value(o, "release_id") for o, _ in objects
                   if isinstance(o, Deployment | Decision | Job)]
    projects = _release_projects(session, release_ids)
    for obj, whole in objects:
        if isinstance(obj, Release):
            pending.topics.update(topics(project=_value(obj, "project_id"), release=obj.id))
        elif isinstance(obj, Environment):
            pending.topics.update(topics(project=_value(obj, "project_id")))
        elif isinstance(obj, Decision):
            rid = _value(obj, "release_id")
            pending.topics.update(topics(project=projects.get(rid), release=rid))
        elif isinstance(obj, Job):
            rid = _value(obj, "release_id")
            pending.topics.update(topics(project=_value(obj, "project_id") or projects.get(rid),
                                         release=rid, job=obj.id))
            state: Any = inspect(obj).attrs
            if not whole and (state.status.history.has_changes() or state.error.history.has_changes()):
                pending.event(obj.id, {"type": "status", "status": _value(obj, "status"),
                                       "error": _value(obj, "error")})
        elif isinstance(obj, Deployment):
            rid, job_id = _value(obj, "release_id"), _value(obj, "job_id")
            pending.topics.update(topics(project=projects.get(rid), release=rid, job=job_id))
            state = inspect(obj).attrs
            if job_id is not None and (whole or state.status.history.has_changes()
                                       or state.message.history.has_changes()):
                pending.event(job_id, _deployment_event(obj.id, _value(obj, "status"),
                                                        _value(obj, "message")))
    _remember_uid(session)


def _deployment_event(deployment_id: int, status: str | None, message: str | None) -> dict[str, Any]:
    return {"type": "deployment", "deployment": deployment_id, "status": status, "message": message}


def _after_flush(session: Session, _context: Any) -> None:
    objects: list[tuple[Any, bool]] = []
    for obj in session.new:
        if type(obj) in WATCHED:
            objects.append((obj, True))
    for obj in session.deleted:
        if type(obj) in WATCHED:
            objects.append((obj, True))
    for obj in session.dirty:
        watched = type(obj)
        if watched in WATCHED and _changed(obj, WATCHED[watched]):
            objects.append((obj, False))
    if objects:
        _collect_objects(session, objects)


def _primary_keys(stmt: Any) -> list[int] | None:
    """The ids an UPDATE names in its WHERE (`id = x`, `id IN (...)`), or None."""
    table = stmt.table
    where = stmt.whereclause
    if where is None:
        return None
    for element in visitors.iterate(where):
        if not isinstance(element, BinaryExpression):
            continue
        left, right = element.left, element.right
        if getattr(getattr(left, "table", None), "name", None) != table.name or \
                getattr(left, "key", None) != "id":
            continue
        if not isinstance(right, BindParameter):
            continue
        value = right.effective_value
        if element.operator is operators.eq and isinstance(value, int):
            return [value]
        if element.operator is operators.in_op and isinstance(value, list | tuple):
            return [int(v) for v in value]
    return None


def _do_orm_execute(state: ORMExecuteState) -> Any:
    """A bulk UPDATE of a watched table: run it, then ring for the rows it named."""
    if not state.is_update:
        return None
    stmt = state.statement
    model = _BY_TABLE.get(getattr(getattr(stmt, "table", None), "name", ""))
    if model is None:
        return None
    watched = WATCHED[model]
    columns = {getattr(key, "key", key) for key in getattr(stmt, "_values", None) or {}}
    if watched is not None and columns and not columns & watched:
        return None  # a lease renewal, an outbox mark: nothing a page shows
    ids = _primary_keys(stmt)
    result = state.invoke_statement()
    if ids is None:
        log.debug("live: an UPDATE of %s names no id; ring explicitly with notify()", model.__name__)
        return result
    if not ids or not getattr(result, "rowcount", 1):
        return result
    _collect_rows(state.session, model, ids)
    return result


def _collect_rows(session: Session, model: type, ids: list[int]) -> None:
    """Topics and job events of rows a bulk UPDATE changed, read back in its transaction."""
    pending = _pending(session)
    conn = session.connection()
    if model is Release:
        for row in conn.execute(select(Release.id, Release.project_id).where(Release.id.in_(ids))):
            pending.topics.update(topics(project=row.project_id, release=row.id))
    elif model is Environment:
        for env in conn.execute(select(Environment.project_id).where(Environment.id.in_(ids))):
            pending.topics.update(topics(project=env.project_id))
    elif model is Decision:
        for decision in conn.execute(select(Decision.release_id, Release.project_id)
                                     .join(Release, Release.id == Decision.release_id)
                                     .where(Decision.id.in_(ids))):
            pending.topics.update(topics(project=decision.project_id, release=decision.release_id))
    elif model is Job:
        for job in conn.execute(select(Job.id, Job.project_id, Job.release_id, Job.status, Job.error)
                                .where(Job.id.in_(ids))):
            project = job.project_id or _release_projects(session, [job.release_id]).get(job.release_id)
            pending.topics.update(topics(project=project, release=job.release_id, job=job.id))
            pending.event(job.id, {"type": "status", "status": job.status, "error": job.error})
    elif model is Deployment:
        for dep in conn.execute(select(Deployment.id, Deployment.release_id, Deployment.job_id,
                                       Deployment.status, Deployment.message, Release.project_id)
                                .join(Release, Release.id == Deployment.release_id)
                                .where(Deployment.id.in_(ids))):
            pending.topics.update(topics(project=dep.project_id, release=dep.release_id,
                                         job=dep.job_id))
            if dep.job_id is not None:
                pending.event(dep.job_id, _deployment_event(dep.id, dep.status, dep.message))
    _remember_uid(session)


def _remember_uid(session: Session) -> None:
    """Read the installation uid inside the transaction, so publishing after the commit needs
    no database (after_commit may not emit SQL on the session)."""
    extensions = current_app.extensions
    if extensions.get("relapp.installation_uid") is None:
        uid = session.connection().scalar(select(Installation.uid).order_by(Installation.id).limit(1))
        if uid:
            extensions["relapp.installation_uid"] = uid


def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        publish(pending)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


# -- publishing -------------------------------------------------------------------------------


def live_key() -> str:
    """The installation's doorbell stream in Redis."""
    from ..models import installation_uid

    return f"relapp:{installation_uid()}:live"


def _redis_for_publishing() -> Any:
    """The Redis client, or None when the embedded server was never started by this process and
    does not run (an admin command): nobody can be listening, and ringing must not start it."""
    app = current_app
    folder = app.config.get("RELAPP_EMBEDDED_REDIS")
    if folder and not app.extensions.get("relapp.redis_started") and "relapp.redis" not in app.extensions:
        from ..embedded import is_answering

        if not is_answering(folder):
            return None
    return get_redis()


def publish(pending: Pending) -> None:
    """One XADD of the topics to the doorbell stream, and the job events into their jobs' log
    streams, in one round trip. A Redis outage loses the doorbell only (a warning)."""
    if not pending:
        return
    try:
        redis = _redis_for_publishing()
        if redis is None:
            return
        pipe = redis.pipeline(transaction=False)
        if pending.topics:
            pipe.xadd(live_key(), {"data": json.dumps({"topics": sorted(pending.topics)})},
                      maxlen=MAXLEN, approximate=True)
        for job_id, events in pending.job_events.items():
            key = stream_key(job_id)
            for payload in events:
                pipe.xadd(key, {"data": json.dumps(payload)}, maxlen=MAX_LINES_PER_JOB + 100,
                          approximate=True)
            pipe.expire(key, STREAM_TTL)
        pipe.execute()
    except (RedisError, OSError, EmbeddedRedisError) as exc:
        log.warning("live doorbell not rung (%s): pages update at their next fetch",
                    exc.__class__.__name__)


def init_app(app: Any) -> None:
    """Listen to the session (once per process: every app shares relapp's one session factory)."""
    if not event.contains(db.session, "after_commit", _after_commit):
        event.listen(db.session, "after_flush", _after_flush)
        event.listen(db.session, "do_orm_execute", _do_orm_execute)
        event.listen(db.session, "after_commit", _after_commit)
        event.listen(db.session, "after_rollback", _after_rollback)


# -- open streams -----------------------------------------------------------------------------

OPEN_STREAMS: dict[str, int] = {}
# Called with (kind, +1 / -1) when a stream opens / closes: the metrics' gauge hangs here.
STREAM_HOOKS: list[Callable[[str, int], None]] = []


@contextmanager
def stream_open(kind: str) -> Iterator[None]:
    """Count one open stream of this kind (`events`, `job`) for as long as the block runs."""
    _count(kind, 1)
    try:
        yield
    finally:
        _count(kind, -1)


def _count(kind: str, delta: int) -> None:
    OPEN_STREAMS[kind] = OPEN_STREAMS.get(kind, 0) + delta
    for hook in STREAM_HOOKS:
        try:
            hook(kind, delta)
        except Exception:  # a metrics hook never breaks a stream
            log.exception("open-stream hook failed")


# -- reading the doorbell (GET /events) -------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_id(raw: str | None) -> tuple[int, int] | None:
    """A Redis stream id `ms-seq` as a tuple, or None when it is not one."""
    if not raw:
        return None
    ms, _, seq = raw.strip().partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()) or len(ms) > 20 or len(seq) > 20:
        return None
    return int(ms), int(seq or 0)


def _missed(wanted: tuple[int, int] | None, oldest: tuple[int, int] | None,
            newest: tuple[int, int] | None) -> bool:
    """Whether a client that saw up to `wanted` may have missed entries no longer kept: an
    unreadable id, one older than the oldest kept entry, one newer than the newest (another
    Redis, a server that lost its data), or any id but 0-0 against an empty stream."""
    if wanted is None:
        return True
    if oldest is None or newest is None:
        return wanted != (0, 0)
    return wanted < oldest or wanted > newest


def follow(after: str | None, *, max_seconds: float) -> Iterator[str]:
    """The doorbell as Server-Sent Events, for at most `max_seconds`; Redis only.

    `retry: 2000`, then `hello` with the newest id; with `after` (Last-Event-ID or ?after=) the
    entries after it, or `resync` first when it is unreadable or older than the oldest entry
    still kept (the page then refreshes every live region). Then each new entry as `change`,
    a `: keep-alive` comment after 15 s of silence. A Redis outage ends the stream: the browser
    reconnects, and its page refreshes on a slow fallback meanwhile.
    """
    deadline = time.monotonic() + max_seconds
    key = live_key()  # read once per process (a cached uid), before the read ends
    db.session.rollback()  # the session check's read must not stay open for the stream's life
    return _follow(key, after, deadline)


def _follow(key: str, after: str | None, deadline: float) -> Iterator[str]:
    with stream_open("events"):
        yield f"retry: {RETRY_MS}\n\n"
        try:
            redis: Any = get_redis()
            newest = redis.xrevrange(key, count=1)
            last = _text(newest[0][0]) if newest else "0-0"
            yield sse("hello", {"last": last})
            cursor = last
            if after is not None:
                oldest = redis.xrange(key, count=1)
                wanted = _parse_id(after)
                if _missed(wanted, _parse_id(_text(oldest[0][0])) if oldest else None,
                           _parse_id(last) if newest else None):
                    yield sse("resync", {"last": last})
                else:
                    cursor = after.strip()
            quiet_since = time.monotonic()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                silent_left = KEEPALIVE - (time.monotonic() - quiet_since)
                block = int(min(BLOCK_MS, left * 1000, max(0.001, silent_left) * 1000))
                found = redis.xread({key: cursor}, count=500, block=max(1, block))
                for _key, entries in found or []:
                    for entry_id, fields in entries:
                        cursor = _text(entry_id)
                        raw = fields.get(b"data") or fields.get("data") or b"{}"
                        yield f"id: {cursor}\nevent: change\ndata: {_text(raw)}\n\n"
                    quiet_since = time.monotonic()
                if time.monotonic() - quiet_since >= KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
        except (RedisError, OSError, EmbeddedRedisError) as exc:
            log.warning("live stream ended: Redis unavailable (%s)", exc.__class__.__name__)
            return
