"""Arrows point down and nothing imports itself back: the house rule, run on relapp/ itself."""

from __future__ import annotations

from pathlib import Path

from tests.architecture import check

ROOT = Path(__file__).resolve().parent.parent


def test_relapp_arrows_point_down_and_have_no_cycle() -> None:
    problems = check(ROOT / "relapp", "relapp")
    assert problems == [], "\n".join(problems)


def test_the_check_finds_a_wrong_arrow_and_the_cycle_it_makes() -> None:
    problems = check(ROOT / "tests" / "fixtures" / "arrows" / "wrongpkg", "wrongpkg")
    assert any("wrongpkg.services.board (services) imports wrongpkg.blueprints.board (views)" in p
               for p in problems), problems
    assert any(p.startswith("import cycle: wrongpkg.blueprints.board → wrongpkg.services.board")
               for p in problems), problems
    assert len(problems) == 2, problems
