"""Jinja filters and globals shared by every page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, request
from flask_login import current_user

from .auth import has_role

NAV = (("board.index", "Board"), ("environments.index", "Environments"), ("train.index", "Train"),
       ("audit.index", "Audit"), ("users.me", "Me"))


def ago(value: datetime | None) -> str:
    """'3 min ago' style relative time."""
    if value is None:
        return "never"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - value).total_seconds())
    if seconds < 0:
        seconds = -seconds
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"in {seconds // size} {unit}"
        return "in a moment"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def stamp(value: datetime | None) -> str:
    """An ISO-like UTC timestamp for tables and evidence pages."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def init_app(app: Flask) -> None:
    """Register filters and the template context."""
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["stamp"] = stamp

    @app.context_processor
    def inject() -> dict[str, Any]:
        nav = [(endpoint, label) for endpoint, label in NAV if endpoint in current_app.view_functions]
        return {
            "nav_links": nav,
            "demo_mode": current_app.config["RELAPP_DEMO"],
            "can": lambda role: current_user.is_authenticated and has_role(current_user, role),
            "is_htmx": bool(request.headers.get("HX-Request")),
        }

    @app.after_request
    def security_headers(response: Any) -> Any:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        )
        if "HX-Request" in request.headers or request.headers.get("Vary"):
            response.vary.add("HX-Request")
        return response
