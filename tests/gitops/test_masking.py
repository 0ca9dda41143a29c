"""Masking what a deploy script prints of a secret (issue 9, finding 10): parts of a long secret,
its base64 forms at every alignment, and masking that holds when Redis is down."""

from __future__ import annotations

import base64
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from redis import Redis

from relapp.domain.secretmask import RUN, SecretMasker, redact_urls, redact_value
from relapp.drivers import DeployContext, Outcome, build_driver, secrets_of
from relapp.embedded import ensure_server, stop_server
from relapp.extensions import db
from relapp.joblog import JobLog, stream_key
from relapp.models import Job, JobLogLine

SECRET = "hunter2-Very-long-Pass-phrase!"  # 30 characters
ALPHABET = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="*")
SECRETS = st.text(alphabet=ALPHABET, min_size=12, max_size=64)
PADDING = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                                         exclude_characters="*"), max_size=30)


def runs(text: str, size: int = RUN) -> list[str]:
    """Every run of `size` characters of text."""
    return [text[i:i + size] for i in range(len(text) - size + 1)]


def secret_chars(blob: str, before: int, length: int) -> str:
    """The characters of a base64 blob that encode nothing but the `length` bytes that start at
    byte `before` of the encoded data (the ones a reader could decode the secret from)."""
    first = -(-8 * before // 6)
    last = 8 * (before + length) // 6
    return blob[first:last]


# -- a table of what a script may print --------------------------------------------------------

CASES = [
    ("the whole secret", f"token={SECRET};", "token=****;"),
    ("a prefix of 8", f"using {SECRET[:8]}…", "using ****…"),
    ("a prefix of 12", f"using {SECRET[:12]}.", "using ****."),
    ("a middle run", f"[{SECRET[5:19]}]", "[****]"),
    ("the secret twice", f"{SECRET} and {SECRET}", "**** and ****"),
    ("a run and the rest", f"{SECRET[:10]} {SECRET[10:]}", "**** ****"),
    ("base64", base64.b64encode(SECRET.encode()).decode(), None),
    ("URL-safe base64 without padding",
     base64.urlsafe_b64encode(b"\xff" + SECRET.encode()).decode().rstrip("="), None),
    ("basic auth header", "Authorization: Basic "
     + base64.b64encode(b"user:" + SECRET.encode()).decode(), None),
    ("seven characters only", f"x{SECRET[:7]}x", f"x{SECRET[:7]}x"),
    ("nothing secret", "deploying 1.4.0 to prod: step 3 of 7", "deploying 1.4.0 to prod: step 3 of 7"),
]


@pytest.mark.parametrize(("what", "line", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_table_of_what_a_script_prints(what: str, line: str, expected: str | None) -> None:
    masked = SecretMasker([SECRET])(line)
    if expected is not None:
        assert masked == expected, what
    assert not any(run in masked for run in runs(SECRET)), masked
    for form in (base64.b64encode, base64.urlsafe_b64encode):
        for before in range(3):
            blob = form(b"\0" * before + SECRET.encode()).decode()
            assert not any(run in masked for run in runs(secret_chars(blob, before, len(SECRET))))


def test_a_secret_inside_a_longer_base64_blob_is_masked_and_the_rest_kept() -> None:
    data = b"user:" + SECRET.encode() + b"@host.example.com"
    blob = base64.b64encode(data).decode()
    masked = SecretMasker([SECRET])(f"auth {blob} end")
    # The characters that encode the secret alone go; those of "user:…" and "…@host" stay.
    first, last = -(-8 * 5 // 6), 8 * (5 + len(SECRET)) // 6
    assert masked == f"auth {blob[:first]}****{blob[last:]} end"


def test_short_secrets_are_masked_whole_only() -> None:
    masker = SecretMasker(["abcd1234", "xyz"])  # 8 characters; 3 is too short to mask at all
    assert masker("p=abcd1234 q=abcd123 r=xyz") == "p=**** q=abcd123 r=xyz"
    assert masker(base64.b64encode(b"abcd1234").decode()) == base64.b64encode(b"abcd1234").decode()
    assert not SecretMasker([]) and SecretMasker([])("same") == "same"


def test_two_secrets_that_touch_become_one_mask() -> None:
    other = "0123456789abcdefXYZ"
    assert SecretMasker([SECRET, other])(f"<{SECRET}{other}>") == "<****>"


def test_url_credentials_are_redacted_in_text_and_values() -> None:
    assert redact_urls("from https://bob:tok3n@git.example.com/x.git ok") == \
        "from https://***@git.example.com/x.git ok"
    assert redact_urls("deploy:pw0rd@git.example.com:shop.git") == "***@git.example.com:shop.git"
    assert redact_urls("git@github.com:org/x.git and a@b.com: hi") == \
        "git@github.com:org/x.git and a@b.com: hi"
    value = {"remote_url": "https://bob:tok3n@h/x", "list": ["http://t0ken@h/y"], "n": 3}
    assert redact_value(value) == {"remote_url": "https://***@h/x", "list": ["http://***@h/y"],
                                   "n": 3}


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=60)
@given(secret=SECRETS, start=st.integers(0, 63), size=st.integers(RUN, 64), before=PADDING,
       after=PADDING)
def test_no_run_of_eight_of_a_long_secret_survives(secret: str, start: int, size: int,
                                                   before: str, after: str) -> None:
    start %= len(secret) - RUN + 1
    part = secret[start:start + size]
    masked = SecretMasker([secret])(before + part + after)
    assert not any(run in masked for run in runs(secret)), (secret, masked)


@settings(max_examples=60)
@given(secret=SECRETS, prefix=st.binary(max_size=8), suffix=st.binary(max_size=8),
       urlsafe=st.booleans(), padded=st.booleans())
@example(secret=SECRET, prefix=b"user:", suffix=b"", urlsafe=False, padded=True)
def test_no_part_of_a_long_secret_survives_in_base64(secret: str, prefix: bytes, suffix: bytes,
                                                     urlsafe: bool, padded: bool) -> None:
    raw = secret.encode()
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    blob = encode(prefix + raw + suffix).decode()
    if not padded:
        blob = blob.rstrip("=")
    masked = SecretMasker([secret])(f"blob: {blob}")
    stable = secret_chars(blob, len(prefix), len(raw))
    assert not any(run in masked for run in runs(stable)), (blob, masked)


@settings(max_examples=60)
@given(secret=SECRETS, text=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                                    max_size=200))
def test_masking_changes_only_what_holds_a_secret(secret: str, text: str) -> None:
    needles = [*runs(secret)]
    for before in range(3):
        for form in (base64.b64encode, base64.urlsafe_b64encode):
            blob = form(b"\0" * before + secret.encode()).decode()
            needles += runs(secret_chars(blob, before, len(secret.encode())))
    masked = SecretMasker([secret])(text)
    if not any(n in text for n in needles):
        assert masked == text


# -- the job log -----------------------------------------------------------------------------


def new_job() -> int:
    job = Job(kind="deploy", status="running", payload={})
    db.session.add(job)
    db.session.commit()
    return job.id


def stored(job_id: int) -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(db.select(JobLogLine.line).where(JobLogLine.job_id == job_id)
                                   .order_by(JobLogLine.seq)))


def published(url: str, job_id: int) -> list[str]:
    entries = Redis.from_url(url).xrange(stream_key(job_id))
    return [json.loads(fields[b"data"])["line"] for _id, fields in entries
            if json.loads(fields[b"data"]).get("type") == "line"]


LEAKS = [
    f"echo {SECRET[3:15]}",
    "Authorization: Basic " + base64.b64encode(b"deploy:" + SECRET.encode()).decode(),
    "cfg " + base64.urlsafe_b64encode(b"ab" + SECRET.encode()).decode().rstrip("="),
    f"git remote https://deploy:{SECRET}@git.example.com/x.git",
]


def assert_clean(lines: list[str]) -> None:
    assert lines
    for line in lines:
        assert not any(run in line for run in runs(SECRET)), line
        assert "deploy:" not in line, line  # a URL's user goes with its password
        assert "****" in line or "***@" in line, line


def test_the_job_log_masks_derived_forms_in_the_database_and_the_live_feed(app_ctx: Any) -> None:
    job_id = new_job()
    joblog = JobLog(job_id)
    db.session.commit()
    joblog.secrets = [SECRET, "tiny"]  # as the deploy job sets them once the driver is known
    for line in LEAKS:
        joblog.write(line)
    assert_clean(stored(job_id))
    assert stored(job_id) == published(app_ctx.config["REDIS_URL"], job_id)


def use_redis(app: Any, url: str) -> None:
    app.config["REDIS_URL"] = url
    app.extensions.pop("relapp.redis", None)
    app.extensions.pop("relapp.queue", None)


def test_masking_holds_when_redis_is_down(app_ctx: Any, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Alembic's logging set-up (run by the migrated template) disables loggers made before it.
    monkeypatch.setattr(logging.getLogger("relapp.joblog"), "disabled", False)
    folder = tmp_path / "own-redis"  # a Redis of this test's own, so stopping it stops nobody
    url = ensure_server(folder)
    try:
        use_redis(app_ctx, url)
        job_id = new_job()
        joblog = JobLog(job_id, [SECRET])
        db.session.commit()
        joblog.write("before the outage " + SECRET)
        stop_server(folder)
        with caplog.at_level(logging.WARNING, logger="relapp.joblog"):
            for line in LEAKS:
                joblog.write(line)
        lines = stored(job_id)
        assert len(lines) == 1 + len(LEAKS)
        assert_clean(lines)
        assert "live log unavailable" in caplog.text
        assert not any(run in caplog.text for run in runs(SECRET))
        # Back up: the live feed carries masked lines again (the outage lost only its own).
        ensure_server(folder)
        joblog.write("after " + SECRET[:20])
        assert published(url, job_id) == ["after ****"]
        assert stored(job_id)[-1] == "after ****"
    finally:
        stop_server(folder)


LEAKY_SCRIPT = """
import base64, os
token = os.environ["DEPLOY_TOKEN"]
print("prefix", token[:10], flush=True)
print("middle", token[6:20], flush=True)
print("basic", base64.b64encode(b"deploy:" + token.encode()).decode(), flush=True)
print("urlsafe", base64.urlsafe_b64encode(b"xy" + token.encode()).decode().rstrip("="), flush=True)
print("whole", token, flush=True)
"""


def test_a_deploy_script_printing_derived_forms_of_its_secret_is_masked_in_the_job_log(
        app_ctx: Any, tmp_path: Path) -> None:
    """The deploy job's own path: a real command driver, its secret set on the job's JobLog."""
    script = tmp_path / "leak.py"
    script.write_text(LEAKY_SCRIPT)
    settings = {"kind": "command", "argv": [sys.executable, str(script)],
                "secrets": {"DEPLOY_TOKEN": SECRET}}
    job_id = new_job()
    joblog = JobLog(job_id)
    db.session.commit()
    joblog.secrets = secrets_of(settings)
    ctx = DeployContext(deployment_id=1, attempt=1, project="p", environment="qa",
                        version="1.0.0", tag="v1.0.0", sha="0" * 40)
    result = build_driver(settings).run(ctx, joblog, lambda: False)
    assert result.outcome is Outcome.SUCCEEDED
    lines = stored(job_id)
    for label in ("prefix", "middle", "basic", "urlsafe", "whole"):
        assert any(line.startswith(label + " ") and "****" in line for line in lines), lines
    assert not any(run in line for line in lines for run in runs(SECRET)), lines
    for before, form in ((7, base64.b64encode), (2, base64.urlsafe_b64encode)):
        blob = form(b"\0" * before + SECRET.encode()).decode()
        stable = runs(secret_chars(blob, before, len(SECRET)))
        assert not any(run in line for line in lines for run in stable), lines
