"""One blueprint per area; registered here."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint to the app."""
    from . import assets, audit, auth, board, environments, health, releases, stream, train, users
    from .api import register_api

    app.register_blueprint(health.bp)
    app.register_blueprint(assets.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(board.bp)
    for module in (releases, environments, train, audit, users, stream):
        app.register_blueprint(module.bp)
    register_api(app)
    from . import live

    app.register_blueprint(live.bp)  # GET /events, the live doorbell
