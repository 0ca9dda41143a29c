"""Pages: the release train — cadence and lead times as plots."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from flask_login import login_required

from ..services.train_report import WINDOWS, train_page, window_weeks

bp = Blueprint("train", __name__)


@bp.get("/train")
@login_required
def index() -> Any:
    """Cut → last environment lead time, time per stage, hotfixes, deploys per week, cut cadence,
    over the window of ?weeks= (4, 12, 26 or 52)."""
    weeks = window_weeks(request.args.get("weeks"))
    page = train_page(request.args.get("project"), weeks)
    return render_template("train/index.html", project=page.project, projects=page.projects,
                           report=page.report, charts=page.charts, windows=WINDOWS, weeks=weeks)
