"""Configuration as code: parse and check the TOML file of projects, environments and teams.

Parsing is pure: it turns text into frozen records or a `SettingsError` that names the line and
the key. Loading the records into the database is `services.sync_settings`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .domain import secretvars, versioning
from .domain.pipeline import Role

ROLES = tuple(role.value for role in Role)  # lowest first; the one list is the domain's Role
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DRIVER_KINDS = ("command", "webhook", "manual")
# Builds a driver table the way the deploy will (relapp.drivers.build_driver), raising a ValueError
# whose `key` attribute names the bad setting. Settings cannot import the drivers (a lower layer
# may not reach up), so the caller that syncs passes it in: services.projects.load_settings.
DriverCheck = Callable[[dict[str, Any]], object]


class SettingsError(ValueError):
    """A malformed configuration file: the message names the line and the key."""


@dataclass(frozen=True)
class TeamSettings:
    name: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class EnvironmentSettings:
    name: str
    requires_go_from: str | None
    deploy_roles: tuple[str, ...]
    decide_roles: tuple[str, ...]
    separation_of_duties: bool
    driver: dict[str, Any]
    version_url: str | None


@dataclass(frozen=True)
class ProjectSettings:
    key: str
    name: str
    remote: str
    main_branch: str = "main"
    tag_template: str = "v{version}"
    # None: the built-in legacy forms (v1.2, 1.2.3, release-1.4.0, rel_1_4_0, ...); a tuple
    # (even an empty one) replaces them.
    legacy_tags: tuple[str, ...] | None = None
    release_branch_template: str = "release/{major}.{minor}"
    baseline: str = "0.1.0"
    issue_key_pattern: str = r"[A-Z][A-Z0-9]+-\d+"
    issue_url_template: str = ""
    pr_url_template: str = ""
    ignore_tags: tuple[str, ...] = ()
    timezone: str = "UTC"
    train_cron: str | None = None
    # The NAME of the environment variable holding the remote's `user:token` (or a token); the
    # value itself never enters the configuration, the database or a log.
    remote_credentials_env: str | None = None
    environments: tuple[EnvironmentSettings, ...] = ()
    teams: tuple[TeamSettings, ...] = field(default_factory=tuple)


def _line_of(text: str, path: str) -> int | None:
    """Best-effort line of a key path like projects[0].environments[1].driver.kind or
    projects[0].legacy_tags[2]: `name[i]` is the i-th [[table]] of that name, or else the i-th
    item of the array `name = [...]`."""
    pos = 0
    found = None
    names: list[str] = []
    for part in path.split("."):
        match = re.fullmatch(r"([\w-]+)(?:\[(\d+)\])?", part)
        if not match:
            return found
        name, index = match.group(1), match.group(2)
        names.append(name)
        header = re.compile(rf"^\s*\[\[\s*{re.escape('.'.join(names))}\s*\]\]", re.MULTILINE)
        hits = list(header.finditer(text, pos)) if index is not None else []
        # A sub-table may be written as its own [a.b.c] header rather than `c = { ... }`.
        table = re.compile(rf"^\s*\[\s*{re.escape('.'.join(names))}\s*\]", re.MULTILINE)
        sub = table.search(text, pos) if index is None else None
        if hits:
            if len(hits) <= int(index):
                return found
            pos = hits[int(index)].end()
        elif sub is not None and (_key_at(text, pos, name) or len(text)) > sub.start():
            pos = sub.end()  # the header comes before any `name =` from here on
        else:
            key = re.compile(rf"(^|[{{,]|\s)\"?{re.escape(name)}\"?\s*=", re.MULTILINE)
            hit = key.search(text, pos)
            if hit is None:
                return found
            pos = hit.end()
            if index is not None:
                item = _array_item(text, pos, int(index))
                if item is None:
                    return text[:pos].count("\n") + 1
                pos = item
        found = text[:pos].count("\n") + 1
    return found


def _key_at(text: str, pos: int, name: str) -> int | None:
    """Where `name = ` is next written at or after pos (None when it is not)."""
    key = re.compile(rf"(^|[{{,]|\s)\"?{re.escape(name)}\"?\s*=", re.MULTILINE)
    hit = key.search(text, pos)
    return None if hit is None else hit.end()


_HEADER = re.compile(r"^\s*\[\[?\s*[\w.\"' -]+\]\]?\s*(#.*)?$")


def _toml_error(text: str, source: str, exc: tomllib.TOMLDecodeError) -> SettingsError:
    """tomllib's sentence with the line named first; "at end of document" (an array, table or
    string left open) becomes the line where the unclosed bracket or string was opened."""
    message = str(exc)
    at = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if at is not None:
        line = int(at.group(1))
        lines = text.splitlines(keepends=True)
        failing = lines[line - 1] if line <= len(lines) else ""
        if message.startswith(("Unclosed array", "Unclosed inline table")) or _HEADER.match(failing):
            # An array left open swallows what follows (a table header is read as its next
            # item), so tomllib gives up later than the mistake: name the open bracket's line.
            offset = sum(len(part) for part in lines[:line - 1]) + int(at.group(2)) - 1
            opened, what = _unclosed(text[:offset], before=line)
            if opened < line and "never closed" in what:
                line = opened
                message = f"{message[:at.end() - 1]}; {what})"
    else:
        line, what = _unclosed(text)
        message = message.replace("(at end of document)", f"(at end of document: {what})")
    return SettingsError(f"{source}, line {line}: not valid TOML: {message}")


def _unclosed(text: str, before: int | None = None) -> tuple[int, str]:
    """The line of the innermost bracket or string still open at the end of a TOML text (of
    those opened before line `before`, when given), and a phrase saying so; the last line when
    nothing is open."""
    stack: list[tuple[str, int]] = []
    line, i, n = 1, 0, len(text)
    while i < n:
        char = text[i]
        if char == "\n":
            line += 1
        elif char == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif char in "\"'":
            quote = text[i:i + 3] if text.startswith(char * 3, i) else char
            opened = line
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                if text[i] == "\n":
                    if len(quote) == 1:
                        break  # a one-line string ends at the line's end (tomllib says so itself)
                    line += 1
                i += 2 if quote[0] == '"' and text[i] == "\\" and text[i + 1:i + 2] != "\n" else 1
            if i >= n:
                return opened, f"the string opened on line {opened} is never closed"
            if text[i] != "\n":
                i += len(quote)
            continue
        elif char in "[{":
            stack.append((char, line))
        elif char in "]}" and stack and stack[-1][0] == {"]": "[", "}": "{"}[char]:
            stack.pop()
        i += 1
    stack = [item for item in stack if before is None or item[1] < before]
    if stack:
        bracket, opened = stack[-1]
        return opened, f"the '{bracket}' opened on line {opened} is never closed"
    last = text.count("\n") + (0 if text.endswith("\n") else 1)
    return max(last, 1), f"the text ends on line {max(last, 1)}"


def _array_item(text: str, pos: int, index: int) -> int | None:
    """Where the index-th item of the TOML array starting at `pos` begins (the text has parsed,
    so strings and comments are well formed); None when it is not an array or is shorter."""
    i = pos
    while i < len(text) and text[i] in " \t":
        i += 1
    if not text.startswith("[", i):
        return None
    i += 1
    count = 0
    while i < len(text):
        char = text[i]
        if char in " \t\r\n,":
            i += 1
        elif char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif char == "]":
            return None
        elif count == index:
            return i
        else:
            i = _skip_item(text, i)
            count += 1
    return None


def _skip_item(text: str, i: int) -> int:
    """The position just after the array item (a string, or a bare value) starting at i."""
    for quote in ('"""', "'''", '"', "'"):
        if text.startswith(quote, i):
            i += len(quote)
            while i < len(text) and not text.startswith(quote, i):
                i += 2 if quote[0] == '"' and text[i] == "\\" else 1
            return i + len(quote)
    while i < len(text) and text[i] not in ",]\n":
        i += 1
    return i


class _Checker:
    def __init__(self, text: str, source: str, check_driver: DriverCheck | None = None) -> None:
        self.text = text
        self.source = source
        self.check_driver = check_driver

    def fail(self, path: str, message: str) -> SettingsError:
        line = _line_of(self.text, path)
        where = f"{self.source}, line {line}" if line else self.source
        return SettingsError(f"{where}: {path}: {message}")

    def table(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a table")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(f"{path}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, table: dict[str, Any], key: str, path: str, *, default: str | None = None,
               required: bool = False, max_len: int = 1000) -> str | None:
        if key not in table:
            if required:
                raise self.fail(path, f"missing required key '{key}'")
            return default
        value = table[key]
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}", "must be a string")
        if len(value) > max_len or any(ord(c) < 32 for c in value):
            raise self.fail(f"{path}.{key}", f"must be at most {max_len} printable characters")
        return value

    def strings(self, table: dict[str, Any], key: str, path: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{path}.{key}", "must be a list of strings")
        return tuple(value)

    def roles(self, table: dict[str, Any], key: str, path: str, default: tuple[str, ...]) -> tuple[str, ...]:
        values = self.strings(table, key, path, default)
        bad = [v for v in values if v not in ROLES]
        if bad:
            raise self.fail(f"{path}.{key}", f"unknown role '{bad[0]}' (roles: {', '.join(ROLES)})")
        return values

    def tag_rules(self, path: str, template: str, legacy: tuple[str, ...] | None,
                  ignore: tuple[str, ...]) -> None:
        """The domain judges the template and the rules; its RuleError names the key and item."""
        try:
            versioning.TagRules(template=template,
                                legacy=versioning.DEFAULT_LEGACY if legacy is None else legacy,
                                ignore=ignore)
        except versioning.RuleError as exc:
            where = f"{path}.{exc.key}" + ("" if exc.index is None else f"[{exc.index}]")
            raise self.fail(where, exc.message) from None

    def link_template(self, table: dict[str, Any], key: str, path: str, placeholder: str) -> str:
        """An optional http(s) URL template that must contain its placeholder ("" = no links)."""
        value = self.string(table, key, path, default="", max_len=500) or ""
        if value and (placeholder not in value or not value.startswith(("https://", "http://"))):
            raise self.fail(f"{path}.{key}", f"must be an http(s) URL containing {placeholder}")
        return value

    def url_without_credentials(self, value: str, path: str, *, remote: bool = False) -> None:
        """Refuse a URL that carries a credential: it would be stored, audited and shown."""
        if secretvars.url_has_credentials(value):
            way = ("put `user:token` (or a token) in an environment variable and name it in "
                   "remote_credentials_env") if remote else "a version URL must be readable without one"
            raise self.fail(path, f"must not contain a user name or password; {way}")

    def variable(self, table: dict[str, Any], key: str, path: str) -> str | None:
        """An optional environment-variable name for a secret (the value is read at run time)."""
        if key not in table:
            return None
        problem = secretvars.variable_problem(table[key])
        if problem is not None:
            raise self.fail(f"{path}.{key}", problem)
        return str(table[key])

    def driver(self, driver: dict[str, Any], path: str) -> None:
        """Build the driver as a deploy will; its error names the setting under `path`."""
        if self.check_driver is None:
            return
        try:
            self.check_driver(driver)
        except ValueError as exc:
            key = getattr(exc, "key", None)
            raise self.fail(f"{path}.{key}" if key else path, str(exc)) from None

    def regex(self, value: str, path: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise self.fail(path, f"is not a valid regular expression: {exc}") from None
        return value


def parse(text: str, *, source: str = "config", base_dir: Path | None = None,
          check_driver: DriverCheck | None = None) -> tuple[ProjectSettings, ...]:
    """Parse and check a configuration text; raise SettingsError naming the line and key.

    `check_driver` builds each driver table as a deploy would (see DriverCheck); without it the
    driver tables are checked only for their kind (sync checks them again before it writes)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(text, source, exc) from None
    check = _Checker(text, source, check_driver)
    check.table(data, "(top level)", {"projects"})
    raw_projects = data.get("projects")
    if not isinstance(raw_projects, list) or not raw_projects:
        raise check.fail("projects", "at least one [[projects]] table is needed")
    projects = []
    seen: set[str] = set()
    for p_index, raw in enumerate(raw_projects):
        path = f"projects[{p_index}]"
        table = check.table(raw, path, {
            "key", "name", "remote", "main_branch", "tag_template", "release_branch_template",
            "baseline", "issue_key_pattern", "issue_url_template", "pr_url_template", "legacy_tags",
            "ignore_tags", "timezone", "train", "environments", "teams", "remote_credentials_env"})
        key = check.string(table, "key", path, required=True, max_len=63) or ""
        if not KEY_RE.match(key):
            raise check.fail(f"{path}.key", "must be lower-case letters, digits, '-' or '_'")
        if key in seen:
            raise check.fail(f"{path}.key", f"project '{key}' is defined twice")
        seen.add(key)
        remote = check.string(table, "remote", path, required=True) or ""
        if remote.startswith("-") or "::" in remote:
            raise check.fail(f"{path}.remote", "is not an allowed remote URL")
        check.url_without_credentials(remote, f"{path}.remote", remote=True)
        credentials_env = check.variable(table, "remote_credentials_env", path)
        if credentials_env is not None and not remote.lower().startswith(("https://", "http://")):
            raise check.fail(f"{path}.remote_credentials_env",
                             "applies only to an http(s) remote (an ssh remote uses its key)")
        if base_dir is not None and "://" not in remote and not re.match(r"^[\w.-]+@[\w.-]+:", remote):
            remote = str((base_dir / remote).resolve())
        tag_template = check.string(table, "tag_template", path, default="v{version}", max_len=100) or ""
        legacy = check.strings(table, "legacy_tags", path) if "legacy_tags" in table else None
        ignore = check.strings(table, "ignore_tags", path)
        check.tag_rules(path, tag_template, legacy, ignore)
        branch_template = check.string(table, "release_branch_template", path, default="release/{major}.{minor}", max_len=100) or ""
        if "{major}" not in branch_template or "{minor}" not in branch_template:
            raise check.fail(f"{path}.release_branch_template", "must contain {major} and {minor}")
        baseline = check.string(table, "baseline", path, default="0.1.0") or ""
        if not re.fullmatch(r"\d+\.\d+\.\d+", baseline):
            raise check.fail(f"{path}.baseline", "must be a version like 0.1.0")
        issue_pattern = check.regex(check.string(table, "issue_key_pattern", path, default=r"[A-Z][A-Z0-9]+-\d+", max_len=200) or "", f"{path}.issue_key_pattern")
        issue_url = check.link_template(table, "issue_url_template", path, "{key}")
        pr_url = check.link_template(table, "pr_url_template", path, "{pr}")
        tz = check.string(table, "timezone", path, default="UTC") or "UTC"
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise check.fail(f"{path}.timezone", f"unknown time zone '{tz}'") from None
        train_cron = None
        if "train" in table:
            train = check.table(table["train"], f"{path}.train", {"cron"})
            train_cron = check.string(train, "cron", f"{path}.train", required=True, max_len=100)
            if train_cron is not None and len(train_cron.split()) != 5:
                raise check.fail(f"{path}.train.cron", "must be a five-field cron expression like '0 10 * * MON'")
        envs = _environments(check, table.get("environments"), path)
        teams = _teams(check, table.get("teams", []), path)
        projects.append(ProjectSettings(
            key=key, name=check.string(table, "name", path, default=key, max_len=120) or key, remote=remote,
            main_branch=check.string(table, "main_branch", path, default="main", max_len=200) or "main",
            tag_template=tag_template, release_branch_template=branch_template, baseline=baseline,
            legacy_tags=legacy, issue_key_pattern=issue_pattern, issue_url_template=issue_url,
            pr_url_template=pr_url, ignore_tags=ignore,
            timezone=tz, train_cron=train_cron, environments=envs, teams=teams,
            remote_credentials_env=credentials_env))
    return tuple(projects)


def _environments(check: _Checker, raw: Any, path: str) -> tuple[EnvironmentSettings, ...]:
    if not isinstance(raw, list) or not raw:
        raise check.fail(f"{path}.environments", "at least one [[projects.environments]] table is needed")
    envs: list[EnvironmentSettings] = []
    names: list[str] = []
    for index, item in enumerate(raw):
        epath = f"{path}.environments[{index}]"
        table = check.table(item, epath, {
            "name", "requires_go_from", "deploy_roles", "decide_roles", "separation_of_duties",
            "driver", "version_url"})
        name = check.string(table, "name", epath, required=True, max_len=63) or ""
        if not KEY_RE.match(name):
            raise check.fail(f"{epath}.name", "must be lower-case letters, digits, '-' or '_'")
        if name in names:
            raise check.fail(f"{epath}.name", f"environment '{name}' is defined twice")
        requires = check.string(table, "requires_go_from", epath, default=None)
        if requires is not None and requires not in names:
            raise check.fail(f"{epath}.requires_go_from", f"must name an earlier environment (one of: {', '.join(names) or 'none'})")
        sod = table.get("separation_of_duties", False)
        if not isinstance(sod, bool):
            raise check.fail(f"{epath}.separation_of_duties", "must be true or false")
        driver = table.get("driver", {"kind": "manual"})
        if not isinstance(driver, dict):
            raise check.fail(f"{epath}.driver", "must be a table")
        kind = driver.get("kind")
        if kind not in DRIVER_KINDS:
            raise check.fail(f"{epath}.driver.kind", f"must be one of: {', '.join(DRIVER_KINDS)}")
        check.driver(driver, f"{epath}.driver")
        version_url = check.string(table, "version_url", epath, default=None)
        if version_url is not None and not version_url.startswith(("http://", "https://")):
            raise check.fail(f"{epath}.version_url", "must be an http(s) URL")
        if version_url is not None:
            check.url_without_credentials(version_url, f"{epath}.version_url")
        names.append(name)
        envs.append(EnvironmentSettings(
            name=name, requires_go_from=requires,
            deploy_roles=check.roles(table, "deploy_roles", epath, (Role.ENGINEER, Role.RELEASE, Role.ADMIN)),
            decide_roles=check.roles(table, "decide_roles", epath, (Role.QA, Role.RELEASE, Role.ADMIN)),
            separation_of_duties=sod, driver=dict(driver), version_url=version_url))
    return tuple(envs)


def _teams(check: _Checker, raw: Any, path: str) -> tuple[TeamSettings, ...]:
    if not isinstance(raw, list):
        raise check.fail(f"{path}.teams", "must be a list of [[projects.teams]] tables")
    teams: list[TeamSettings] = []
    for index, item in enumerate(raw):
        tpath = f"{path}.teams[{index}]"
        table = check.table(item, tpath, {"name", "paths"})
        name = check.string(table, "name", tpath, required=True, max_len=63) or ""
        if any(team.name == name for team in teams):
            raise check.fail(f"{tpath}.name", f"team '{name}' is defined twice")
        paths = check.strings(table, "paths", tpath)
        if not paths:
            raise check.fail(f"{tpath}.paths", "must list at least one path prefix")
        teams.append(TeamSettings(name=name, paths=paths))
    return tuple(teams)


def unset_variables(projects: tuple[ProjectSettings, ...], environ: Mapping[str, str]) -> list[str]:
    """One warning sentence per secret variable the configuration names that `environ` lacks
    (a driver's `*_env` setting, a project's remote_credentials_env): sync goes on, since the
    worker may have it, and the deploy or git job that needs it fails with a sentence."""
    warnings = []
    for p_index, project in enumerate(projects):
        name = project.remote_credentials_env
        if name and not environ.get(name):
            warnings.append(f"projects[{p_index}].remote_credentials_env names {name}, which is not "
                            f"set here; fetching and tagging {project.key} will fail where it is "
                            "not set either.")
        for e_index, env in enumerate(project.environments):
            for key, value in env.driver.items():
                if key.endswith("_env") and isinstance(value, str) and not environ.get(value):
                    warnings.append(
                        f"projects[{p_index}].environments[{e_index}].driver.{key} names {value}, "
                        f"which is not set here; deploys to {project.key}/{env.name} will fail "
                        "where it is not set either.")
    return warnings


def load(path: str | Path, *, check_driver: DriverCheck | None = None) -> tuple[ProjectSettings, ...]:
    """Read and parse a configuration file; remotes are resolved relative to its folder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{file}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{file}: is not UTF-8 text") from None
    return parse(text, source=str(file), base_dir=file.resolve().parent, check_driver=check_driver)
