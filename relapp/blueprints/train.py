"""Pages: the release train — cadence and lead times as plots."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from flask_login import login_required

from ..services import reports

bp = Blueprint("train", __name__)

DAY = 86400.0


def even_ceiling(count: float) -> int:
    """An even axis maximum (at least 2) for counts, so the middle grid line is a whole number."""
    whole = max(2, int(-(-count // 1)))
    return whole + whole % 2


def chart_data(report: reports.TrainReport) -> dict[str, Any]:
    """Bars, spans and scales for the SVG charts (presentation only: days, labels, tooltips)."""
    last = report.envs[-1] if report.envs else "the last environment"
    lead = [{"label": t.release.version, "value": t.lead_seconds / DAY,
             "cls": "ok" if t.lead_seconds <= reports.WEEK_SECONDS else "late",
             "note": f"{t.lead_seconds / DAY:.1f}", "sub": t.cut_at.strftime("%d %b"),
             "tip": f"{t.release.version}: cut {t.cut_at:%Y-%m-%d} → {last} in "
                    f"{t.lead_seconds / DAY:.1f} days"}
            for t in report.releases if t.lead_seconds is not None]
    stages = []
    for t in report.releases:
        total = t.total_seconds / DAY
        state = " so far" if any(s.open for s in t.stages) else (" (superseded)" if t.superseded else "")
        stages.append({"label": t.release.version, "total": total, "note": f"{total:.1f} d{state}",
                       "spans": [{"stage": s.stage, "days": s.seconds / DAY, "open": s.open}
                                 for s in t.stages]})
    hotfixes = [{"label": t.release.version, "value": t.hotfixes, "cls": "late" if t.hotfixes else "ok",
                 "note": str(t.hotfixes), "sub": "",
                 "tip": f"{t.release.version}: {t.hotfixes} hotfix{'es' if t.hotfixes != 1 else ''}"}
                for t in report.releases if t.release.kind != "hotfix"]
    gaps = [{"label": g.version, "value": g.days, "cls": "ok" if g.days <= 7 else "late",
             "note": f"{g.days:.1f}", "sub": g.cut_at.strftime("%d %b"),
             "tip": f"{g.version} was cut {g.days:.1f} days after the previous cut"} for g in report.gaps]
    return {
        "lead": lead, "lead_max": reports.nice_ceiling(max([i["value"] for i in lead] + [7])),
        "stages": stages, "stages_max": reports.nice_ceiling(max([s["total"] for s in stages] + [7])),
        "hotfixes": hotfixes, "hotfixes_max": even_ceiling(max([i["value"] for i in hotfixes], default=0)),
        "gaps": gaps, "gaps_max": reports.nice_ceiling(max([i["value"] for i in gaps] + [7])),
        "weeks_max": even_ceiling(report.max_weekly),
    }


@bp.get("/train")
@login_required
def index() -> Any:
    """Cut → last environment lead time, time per stage, hotfixes, deploys per week, cut cadence."""
    project = reports.pick_project(request.args.get("project"))
    report = reports.train_report(project) if project else None
    charts = chart_data(report) if report else {}
    html = render_template("train/index.html", project=project, projects=reports.projects(),
                           report=report, charts=charts)
    return html
