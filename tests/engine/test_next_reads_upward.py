"""The next version reads the database's versions from its previous release's line upwards: a cut
at 100k releases does not parse the whole history, and what it decides is unchanged (lines above
are still skipped as owned, versions below change nothing)."""

from __future__ import annotations

from typing import Any

from semver import Version
from sqlalchemy import insert, select

from relapp.extensions import db
from relapp.models import Release, utcnow
from relapp.services import releases
from relapp.services.projects import get_project


def _db_only(project_id: int, *versions: str) -> None:
    """Releases the database holds without a tag in the repository (pending or failed cuts)."""
    db.session.execute(insert(Release), [
        {"project_id": project_id, "version": v, "major": Version.parse(v).major,
         "minor": Version.parse(v).minor, "patch": Version.parse(v).patch, "kind": "minor",
         "source": "cut", "tag": f"v{v}", "sha": None, "state": "failed", "details": {},
         "created_at": utcnow()} for v in versions])
    db.session.commit()


def test_the_next_version_reads_only_the_lines_from_its_previous_release_up(app: Any,
                                                                            demo_project: Any) -> None:
    project = get_project("demo")
    _db_only(project.id, *(f"0.{n}.0" for n in range(1, 40)), "1.3.0")
    # The demo's main follows 1.2.0 (its legacy tag rel_1_2_0); 1.3.0 is owned by a failed cut.
    preview = releases.preview(project)
    assert str(preview.version) == "1.4.0", preview
    assert any("Skipped 1.3: already used by 1.3.0" in note for note in preview.notes), preview.notes
    upward = {str(v) for v in releases.db_versions(project, Version.parse("1.2.0"))}
    assert upward == {"1.3.0"}
    everything = releases.db_versions(project)
    assert len(everything) == 40 and db.session.scalar(
        select(Release.version).where(Release.version == "0.1.0")) == "0.1.0"
