"""Configuration as code for tag conventions: tag_template, legacy_tags, ignore_tags and
pr_url_template are parsed, judged by the domain's TagRules, reported by line and key, and
synced (legacy_tags None keeps the built-in forms)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from relapp.extensions import db
from relapp.models import AuditEvent, Project
from relapp.services.projects import sync_settings
from relapp.settings import SettingsError, parse

# Line numbers matter: the error tests below name them.
PRODUCT = r"""
[[projects]]
key = "product"
remote = "/srv/git/product.git"
tag_template = "product-{major}_{minor}_{patch}"
legacy_tags = [
    # release candidates of another shape: rc-1_5_0-1
    'rc-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)-(?P<pre>\d+)',
    'product-(?P<major>\d+)_(?P<minor>\d+)',
]
ignore_tags = ['^lite-.*$', '^\d{4}\.\d{2}$']
pr_url_template = "https://git.example.com/product/pull/{pr}"

[[projects.environments]]
name = "qa"
"""

# The same project with a template today's and tomorrow's domain both read, for the sync tests.
SHOP = r"""
[[projects]]
key = "shop"
remote = "/srv/git/shop.git"
tag_template = "v{version}"
legacy_tags = ['release-(?P<major>\d+)\.(?P<minor>\d+)']
ignore_tags = ['^nightly-.*$']
pr_url_template = "https://git.example.com/shop/pull/{pr}"

[[projects.environments]]
name = "qa"
"""


SHOP_LEGACY = r"legacy_tags = ['release-(?P<major>\d+)\.(?P<minor>\d+)']"
PRODUCT_LEGACY = PRODUCT[PRODUCT.index("legacy_tags = ["):PRODUCT.index("ignore_tags")]


def _without(text: str, key: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} ="))


def _replaced(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_parse_reads_tag_rules_and_pr_link():
    (project,) = parse(PRODUCT)
    assert project.tag_template == "product-{major}_{minor}_{patch}"
    assert project.legacy_tags == (
        r"rc-(?P<major>\d+)_(?P<minor>\d+)_(?P<patch>\d+)-(?P<pre>\d+)",
        r"product-(?P<major>\d+)_(?P<minor>\d+)",
    )
    assert project.ignore_tags == ("^lite-.*$", r"^\d{4}\.\d{2}$")
    assert project.pr_url_template == "https://git.example.com/product/pull/{pr}"


def test_absent_legacy_tags_keep_the_built_ins_and_an_empty_list_replaces_them():
    (absent,) = parse(_without(SHOP, "legacy_tags"))
    assert absent.legacy_tags is None
    assert absent.pr_url_template == "https://git.example.com/shop/pull/{pr}"
    (empty,) = parse(_replaced(SHOP, SHOP_LEGACY, "legacy_tags = []"))
    assert empty.legacy_tags == ()
    (bare,) = parse(_without(_without(SHOP, "pr_url_template"), "ignore_tags"))
    assert bare.pr_url_template == "" and bare.ignore_tags == ()


@pytest.mark.parametrize("template", [
    "product-{major}_{minor}_{patch}",
    "v{major}.{minor}.{patch}",
    "release/{version}",
    "{major}.{minor}.{patch}-stable",
    "v{version}",
])
def test_any_tag_convention_is_a_template(template):
    (project,) = parse(SHOP.replace('tag_template = "v{version}"', f'tag_template = "{template}"'))
    assert project.tag_template == template


ALLOWED_PLACEHOLDERS = r"(?s)(?=.*\{version\})(?=.*\{major\})"


@pytest.mark.parametrize("old, new, line, key, says", [
    ('tag_template = "product-{major}_{minor}_{patch}"', 'tag_template = "v{version}-{version}"',
     5, "tag_template", ALLOWED_PLACEHOLDERS),
    ('tag_template = "product-{major}_{minor}_{patch}"', 'tag_template = "product-{minor}_{patch}"',
     5, "tag_template", ALLOWED_PLACEHOLDERS),
    (r"'product-(?P<major>\d+)_(?P<minor>\d+)',", r"'product-(?P<major>\d+_(?P<minor>\d+)',",
     9, r"legacy_tags\[1\]", r"(?i)regular expression"),
    (r"'product-(?P<major>\d+)_(?P<minor>\d+)',", r"'product-(?P<minor>\d+)_(?P<patch>\d+)',",
     9, r"legacy_tags\[1\]", r"\(\?P<major>"),
    # (a+)+$ is not catastrophic on the `regex` engine the domain runs user rules on; (a|aa)+$ is.
    (r"ignore_tags = ['^lite-.*$', '^\d{4}\.\d{2}$']", "ignore_tags = ['^lite-.*$', '(a|aa)+$']",
     11, r"ignore_tags\[1\]", r"(?i)catastrophic backtracking.*matches whole tag names"),
    (r"'rc-(?P<major>\d+)_", r"'rc-(?P<major>(\d|\d\d)+)_",
     8, r"legacy_tags\[0\]", r"(?i)catastrophic backtracking.*\(\?P<major>"),
    ("ignore_tags = ['^lite-.*$',", "ignore_tags = ['^lite-(.*$',",
     11, r"ignore_tags\[0\]", r"(?i)regular expression"),
    ('pr_url_template = "https://git.example.com/product/pull/{pr}"',
     'pr_url_template = "https://git.example.com/product/pull/"',
     12, "pr_url_template", r"must be an http\(s\) URL containing \{pr\}"),
    ('pr_url_template = "https://git.example.com/product/pull/{pr}"',
     'pr_url_template = "ftp://git.example.com/{pr}"',
     12, "pr_url_template", r"must be an http\(s\) URL containing \{pr\}"),
    (PRODUCT_LEGACY, "legacy_tags = 'rc-.*'\n", 6, "legacy_tags", "must be a list of strings"),
], ids=["two-versions", "minor-without-major", "legacy-does-not-compile", "legacy-without-major",
        "catastrophic-ignore", "catastrophic-legacy", "ignore-does-not-compile", "pr-link-without-pr", "pr-link-not-http",
        "legacy-not-a-list"])
def test_a_bad_template_or_rule_names_line_and_key_and_says_what_is_allowed(old, new, line, key, says):
    with pytest.raises(SettingsError) as caught:
        parse(_replaced(PRODUCT, old, new), source="relapp.toml")
    message = str(caught.value)
    where = rf"relapp\.toml, line {line}: projects\[0\]\.{key}: "
    assert re.match(where, message), message
    assert re.search(says, re.sub(where, "", message)), message
    assert "Traceback" not in message and "\n" not in message


def test_the_second_project_is_named_by_its_index_and_line():
    second = _replaced(PRODUCT, 'key = "product"', 'key = "lite"') + _replaced(
        PRODUCT, r"'product-(?P<major>\d+)_(?P<minor>\d+)'", r"'product-(?P<minor>\d+)'")
    with pytest.raises(SettingsError, match=r"^config, line 24: projects\[1\]\.legacy_tags\[1\]: "):
        parse(second)


def _count(model, *where):
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_sync_stores_the_rules_and_a_second_sync_changes_nothing(app):
    sync_settings(parse(_without(SHOP, "legacy_tags")))
    project = db.session.scalar(select(Project).where(Project.key == "shop"))
    assert project.legacy_tags is None  # the built-in legacy forms
    assert project.pr_url_template == "https://git.example.com/shop/pull/{pr}"

    assert sync_settings(parse(SHOP)) == ["project shop: changed legacy_tags"]
    db.session.expire_all()
    assert project.legacy_tags == [r"release-(?P<major>\d+)\.(?P<minor>\d+)"]
    update = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "project.update")).one()
    assert update.before == {"legacy_tags": "None"}
    assert "release-" in update.after["legacy_tags"]

    events = _count(AuditEvent)
    assert sync_settings(parse(SHOP)) == []
    assert _count(AuditEvent) == events

    sync_settings(parse(_replaced(SHOP, SHOP_LEGACY, "legacy_tags = []")))
    db.session.expire_all()
    assert project.legacy_tags == []  # no legacy form at all: not the same as absent
    assert sync_settings(parse(_without(_without(SHOP, "legacy_tags"), "pr_url_template"))) == [
        "project shop: changed legacy_tags, pr_url_template"]
    db.session.expire_all()
    assert project.legacy_tags is None and project.pr_url_template == ""


@pytest.mark.parametrize("old, new, where", [
    ('pr_url_template = "https://git.example.com/shop/pull/{pr}"', 'pr_url_template = "shop/{pr}"',
     r"line 19: projects\[1\]\.pr_url_template: must be an http\(s\) URL containing \{pr\}"),
    ("legacy_tags = ['release-(?P<major>", "legacy_tags = ['release-(?P<mayor>",
     r"line 17: projects\[1\]\.legacy_tags\[0\]: "),
], ids=["pr-link", "legacy-without-major"])
def test_config_sync_of_a_bad_file_changes_nothing(app, tmp_path, old, new, where):
    good = tmp_path / "good.toml"
    good.write_text(SHOP)
    runner = app.test_cli_runner()
    assert "project shop: created" in runner.invoke(args=["config", "sync", str(good)]).output
    events = _count(AuditEvent)
    # A new, valid project first and the bad one after it: neither is written.
    bad = tmp_path / "bad.toml"
    bad.write_text(_replaced(SHOP, 'key = "shop"', 'key = "other"')
                   + _replaced(_replaced(SHOP, old, new), 'name = "qa"', 'name = "beta"'))
    result = runner.invoke(args=["config", "sync", str(bad)])
    assert result.exit_code == 1, result.output
    assert re.search(rf"Error: {re.escape(str(bad))}, {where}", result.output), result.output
    assert "Traceback" not in result.output
    db.session.expire_all()
    assert _count(AuditEvent) == events
    assert _count(Project) == 1
    shop = db.session.scalar(select(Project).where(Project.key == "shop"))
    assert shop.legacy_tags == [r"release-(?P<major>\d+)\.(?P<minor>\d+)"]
    assert [env.name for env in shop.environments] == ["qa"]
