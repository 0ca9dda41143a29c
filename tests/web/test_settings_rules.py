"""Configuration as code for tag conventions: tag_template, legacy_tags, ignore_tags and
pr_url_template are parsed, judged by the domain's TagRules, reported by line and key, and
synced (legacy_tags None keeps the built-in forms); and what config sync refuses with a line: a
name given twice, malformed TOML, a credential in a URL (issue 9, finding 9)."""

from __future__ import annotations

import dataclasses
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


# -- issue 9, finding 9: duplicates, TOML errors by line, credentials kept out of URLs ---------

TEAMS = """
[[projects]]
key = "shop"
remote = "https://git.example.com/shop.git"

[[projects.environments]]
name = "qa"

[[projects.environments]]
name = "prod"

[[projects.teams]]
name = "web"
paths = ["web/"]

[[projects.teams]]
name = "api"
paths = ["api/"]
"""


@pytest.mark.parametrize("old, new, where", [
    ('name = "api"', 'name = "web"', r"line 17: projects\[0\]\.teams\[1\]\.name: team 'web' is defined twice"),
    ('name = "prod"', 'name = "qa"', r"line 10: projects\[0\]\.environments\[1\]\.name: environment 'qa' is defined twice"),
], ids=["team", "environment"])
def test_a_name_given_twice_is_a_sentence_naming_it(old, new, where):
    with pytest.raises(SettingsError, match=rf"^relapp\.toml, {where}$"):
        parse(_replaced(TEAMS, old, new), source="relapp.toml")


def test_sync_refuses_a_team_given_twice_with_a_sentence_not_an_integrity_error(app):
    """Records built in code skip parse's check: sync checks again before it writes."""
    (shop,) = parse(TEAMS)
    twice = dataclasses.replace(shop, teams=(shop.teams[0], shop.teams[0]))
    with pytest.raises(SettingsError, match=r"^projects\[0\]: team 'web' of project shop is defined twice"):
        sync_settings((twice,))
    assert _count(Project) == 0
    assert [line for line in sync_settings((shop,)) if line.startswith("team")] == [
        "team shop/web: created", "team shop/api: created"]


@pytest.mark.parametrize("old, new, says", [
    # An array left open runs to the end of the file: tomllib says only "at end of document".
    ('paths = ["api/"]', 'paths = ["api/",\n  "lib/"', r"line 18: not valid TOML: .*at end of document: the '\[' opened on line 18 is never closed"),
    # ... or into the next table header, which it then misreads.
    ('paths = ["web/"]', 'paths = ["web/",', r"line 14: not valid TOML: .*the '\[' opened on line 14 is never closed"),
    ('name = "web"', 'name = "web', r"line 13: not valid TOML: Illegal character"),
    ('name = "api"', 'name = "api"\nname = "lib"', r"line 18: not valid TOML: Cannot overwrite a value"),
    ('name = "api"', 'name = """api', r"line 17: not valid TOML: .*the string opened on line 17 is never closed"),
    ('name = "qa"', 'name = "qa"\ndriver = { kind = "manual",\n', r"line 8: not valid TOML: "),
], ids=["unclosed-array-at-end", "unclosed-array-before-a-table", "bad-string", "duplicate-key",
        "unclosed-multiline-string", "unclosed-inline-table"])
def test_every_toml_error_names_a_line(old, new, says):
    text = _replaced(TEAMS, old, new)
    with pytest.raises(SettingsError) as caught:
        parse(text, source="relapp.toml")
    message = str(caught.value)
    assert message.startswith("relapp.toml, line "), message
    assert re.search(says, message), message
    assert "\n" not in message


@pytest.mark.parametrize("remote", [
    "https://deploy:s3cr3t-t0ken@git.example.com/shop.git",
    "https://ghp_0123456789abcdef@github.com/acme/shop.git",  # a token as the user name
    "http://deploy:pw@10.0.0.5/shop.git",
    "ssh://git:pw@git.example.com/shop.git",
    "deploy:s3cr3t@git.example.com:acme/shop.git",  # git's scp-like form with a password
])
def test_a_remote_with_a_credential_is_refused_pointing_at_remote_credentials_env(remote):
    text = _replaced(TEAMS, 'remote = "https://git.example.com/shop.git"', f'remote = "{remote}"')
    with pytest.raises(SettingsError) as caught:
        parse(text, source="relapp.toml")
    message = str(caught.value)
    assert message.startswith("relapp.toml, line 4: projects[0].remote: must not contain a user name or password; "), message
    assert "remote_credentials_env" in message
    secret = remote.split("@")[0].split("//")[-1]
    assert secret not in message  # the refusal does not repeat the credential it refuses


@pytest.mark.parametrize("remote", [
    "git@github.com:acme/shop.git", "ssh://git@git.example.com/shop.git",
    "https://git.example.com/shop.git", "/srv/git/shop.git"])
def test_a_remote_without_a_credential_is_accepted(remote):
    text = _replaced(TEAMS, 'remote = "https://git.example.com/shop.git"', f'remote = "{remote}"')
    (project,) = parse(text)
    assert project.remote == remote


def test_remote_credentials_env_stores_a_variable_name_for_an_https_remote():
    text = _replaced(TEAMS, 'key = "shop"', 'key = "shop"\nremote_credentials_env = "SHOP_GIT_TOKEN"')
    (project,) = parse(text)
    assert project.remote_credentials_env == "SHOP_GIT_TOKEN"
    (plain,) = parse(TEAMS)
    assert plain.remote_credentials_env is None


@pytest.mark.parametrize("value, says", [
    ('"shop token"', "must be the name of an environment variable"),
    ('"1TOKEN"', "must be the name of an environment variable"),
    ("42", "must be the name of an environment variable"),
    ('"SECRET_KEY"', "must not name SECRET_KEY, one of relapp's own settings"),
    ('"RELAPP_DATABASE"', "must not name RELAPP_DATABASE, one of relapp's own settings"),
])
def test_remote_credentials_env_must_be_a_variable_that_is_not_relapps_own(value, says):
    text = _replaced(TEAMS, 'key = "shop"', f'key = "shop"\nremote_credentials_env = {value}')
    with pytest.raises(SettingsError, match=rf"^config, line 4: projects\[0\]\.remote_credentials_env: {says}"):
        parse(text)


def test_remote_credentials_env_applies_only_to_an_https_remote():
    text = _replaced(_replaced(TEAMS, 'key = "shop"', 'key = "shop"\nremote_credentials_env = "SHOP_GIT_TOKEN"'),
                     "https://git.example.com/shop.git", "git@git.example.com:acme/shop.git")
    with pytest.raises(SettingsError, match=r"remote_credentials_env: applies only to an http\(s\) remote"):
        parse(text)


def test_a_version_url_with_a_credential_is_refused():
    text = _replaced(TEAMS, 'name = "prod"', 'name = "prod"\nversion_url = "https://ops:pw@shop.example.com/version"')
    with pytest.raises(SettingsError, match=r"^config, line 11: projects\[0\]\.environments\[1\]\.version_url: "
                                            r"must not contain a user name or password"):
        parse(text)


def test_sync_stores_the_name_of_the_remote_credentials_variable_and_never_its_value(app, monkeypatch):
    monkeypatch.setenv("SHOP_GIT_TOKEN", "deploy:tok-0123456789-abcdef")
    text = _replaced(TEAMS, 'key = "shop"', 'key = "shop"\nremote_credentials_env = "SHOP_GIT_TOKEN"')
    assert "project shop: created" in sync_settings(parse(text))
    project = db.session.scalar(select(Project).where(Project.key == "shop"))
    assert project.remote_credentials_env == "SHOP_GIT_TOKEN"
    assert project.remote_url == "https://git.example.com/shop.git"
    stored = [str((e.before, e.after, e.detail)) for e in db.session.scalars(select(AuditEvent))]
    assert any("SHOP_GIT_TOKEN" in row for row in stored)
    assert not any("tok-0123456789" in row for row in stored)
    assert sync_settings(parse(text)) == []
    assert sync_settings(parse(TEAMS)) == ["project shop: changed remote_credentials_env"]
