"""`GET /events`: the live doorbell as Server-Sent Events, one connection per browser tab.

The session is checked at open (a page's login redirect, or 401 for a script); after that the
stream reads Redis only, never the database (services/live.py, `follow`). It resumes after
`Last-Event-ID` (or `?after=`), sends `resync` when that id is older than what Redis still
keeps, and ends after RELAPP_SSE_MAX_SECONDS; the browser reconnects and misses nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context
from flask_login import current_user

from ..errors import problem
from ..extensions import login_manager
from ..services.live import follow

bp = Blueprint("live", __name__)


@bp.get("/events")
def events() -> Any:
    """What changed, as `change` events naming topics, for a signed-in person's pages."""
    if not current_user.is_authenticated:
        if request.accept_mimetypes.best == "text/event-stream" or request.headers.get("HX-Request"):
            return problem(401, "Sign in to follow live changes.", code="unauthorized")
        return login_manager.unauthorized()
    after = request.headers.get("Last-Event-ID") or request.args.get("after")
    max_seconds = float(current_app.config.get("RELAPP_SSE_MAX_SECONDS") or 300)
    response = Response(stream_with_context(follow(after, max_seconds=max_seconds)),
                        mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response
