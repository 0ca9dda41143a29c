"""The release kanban (home page)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from flask_login import login_required
from sqlalchemy import select

from ..extensions import db
from ..models import Project
from ..services.board import board
from ..services.projects import get_project

bp = Blueprint("board", __name__)


def _project() -> Project | None:
    key = request.args.get("project")
    if key:
        return get_project(key)
    return db.session.scalar(select(Project).order_by(Project.id))


@bp.get("/")
@login_required
def index() -> Any:
    """The board of one project: a column per stage, a card per release."""
    project = _project()
    projects = db.session.scalars(select(Project).order_by(Project.key)).all()
    columns = board(project) if project else []
    template = "board/index.html"
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "board":
        template = "board/_board.html"
    response = render_template(template, project=project, projects=projects, columns=columns)
    return response, 200, {"Vary": "HX-Request"}
