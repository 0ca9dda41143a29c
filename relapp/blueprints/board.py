"""The release kanban (home page)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import select

from ..extensions import db
from ..models import Project
from ..services.board import board
from ..services.projects import issue_url
from ..services.reports import next_cut as next_cut_of
from ..services.reports import pick_project

bp = Blueprint("board", __name__)
# Cards, decisions and changelogs link issue keys through the project's URL template.
bp.add_app_template_global(issue_url, "issue_url")


@bp.get("/")
@login_required
def index() -> Any:
    """The board of one project: a column per stage, a card per release that matters now."""
    project = pick_project(request.args.get("project"))
    projects = db.session.scalars(select(Project).order_by(Project.key)).all()
    show_all = request.args.get("all") == "1"
    columns = board(project, actor=current_user, show_all=show_all) if project else []
    template = "board/index.html"
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "board":
        template = "board/_board.html"
    next_cut = next_cut_of(project)[0] if project else None
    response = render_template(template, project=project, projects=projects, columns=columns,
                               show_all=show_all, next_cut=next_cut)
    return response, 200, {"Vary": "HX-Request"}
