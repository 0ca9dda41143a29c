"""How pages are rendered: one template per page whose named blocks are its htmx fragments
(`render_page`), `Vary: HX-Request` on every response, and the filters and globals every page
shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, render_template, request
from jinja2_fragments.flask import render_block

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


def wants_block(block: str) -> bool:
    """True when htmx asks for only the element that `block` fills.

    A block is named after the id of that element, with `_` for `-` (block `audit_log` fills
    `#audit-log`). A request that names another target, a boosted link and a history restore
    (a URL pushed into history, reloaded) get the whole page.
    """
    htmx = request.htmx
    if not htmx or htmx.boosted or htmx.history_restore_request:
        return False
    return htmx.target is None or htmx.target.replace("-", "_") == block


def render_page(template: str, block: str | None = None, **context: Any) -> str:
    """The whole page, or only its `block` when htmx asks for that element (see wants_block)."""
    if block is not None and wants_block(block):
        return render_block(template, block, **context)
    return render_template(template, **context)


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
        return response

    @app.after_request
    def vary_on_htmx(response: Any) -> Any:
        # Any URL may answer htmx with a fragment and everyone else with the page: caches (the
        # browser's back button included) must keep the two apart, and fragments by target.
        response.vary.add("HX-Request")
        response.vary.add("HX-Target")
        return response
