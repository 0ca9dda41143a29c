"""The release kanban (home page)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from flask_login import current_user, login_required

from ..services.board import board_page
from ..services.live_regions import newest_change
from ..services.projects import issue_url, pr_url
from ..templating import render_page

bp = Blueprint("board", __name__)
# Cards, decisions and changelogs link issue keys through the project's URL template.
bp.add_app_template_global(issue_url, "issue_url")
bp.add_app_template_global(pr_url, "pr_url")
# Where a signed-in page's /events stream starts (base.html, live.js).
bp.add_app_template_global(newest_change, "live_after")


@bp.get("/")
@login_required
def index() -> Any:
    """The board of one project: a column per stage, a card per release that matters now; the
    board alone (it refreshes itself) when htmx asks for #board."""
    page = board_page(request.args.get("project"), actor=current_user,
                      show_all=request.args.get("all") == "1")
    return render_page("board/index.html", "board", page=page, project=page.project)
