"""Adoption: what relapp makes of a repository's existing tags, the rules that would read the
rest, and recording the recognised tags as releases that follow each other by reachability."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from semver import Version
from sqlalchemy import select

from .. import gitops
from ..domain import versioning as vs
from ..domain.gitdata import RawCommit, TagRef
from ..exceptions import ServiceError
from ..extensions import db
from ..models import Project, Release, User, utcnow
from . import audit
from .projects import get_project
from .releases import _git_error, _locked, plan_main, read_clone, rules, workspace

# The page and the API list at most this many tags of each kind; the shapes summarise the rest.
LIST_LIMIT = 200
# Shapes given a rule (largest first), and those whose "next version under this rule" is
# worked out (each may read commits once); the rest are counted.
SHAPE_LIMIT = 50
PREVIEWED_SHAPES = 10

CONFIG_SENTENCE = ("Configuration stays code: add this to your relapp TOML and run "
                   "`flask --app relapp config sync FILE`.")


@dataclass(frozen=True)
class AdoptionReport:
    """The adoption page's content: how many tags are read, the rules that would read the rest
    and what main would get under them, the conflicts to settle, and the TOML to add."""

    version_like: int
    read: int
    not_understood: int
    refusal: str | None
    shapes: list[dict[str, Any]]
    more_shapes: int
    conflicts: list[dict[str, Any]]
    snippet: str | None
    snippet_note: str | None
    proposed_next: str | None
    proposed_refusal: str | None
    recognised: list[dict[str, Any]]
    recognised_count: int
    ignored: list[dict[str, Any]]
    ignored_count: int
    unknown: list[dict[str, Any]]
    unknown_count: int
    main_follows: str | None
    main_next: str | None
    main_refusal: str | None
    fetch_error: str | None


class _ReadOnce:
    """The clone, with commit reads remembered: proposals that leave main's previous release
    where it was ask git for the same commits, and get them once."""

    def __init__(self, ws: gitops.Workspace) -> None:
        self._ws = ws
        self._commits: dict[tuple[str, tuple[str, ...]], list[RawCommit]] = {}

    def commits(self, include: str, exclude: Sequence[str] = ()) -> list[RawCommit]:
        key = (include, tuple(sorted(exclude)))
        if key not in self._commits:
            self._commits[key] = self._ws.commits(include, exclude)
        return self._commits[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


@dataclass
class _Main:
    """What every plan of the report shares: main's head, the tags reachable from it, the clone."""

    project: Project
    ws: _ReadOnce
    tags: list[TagRef]
    head: str
    merged: set[str]

    def plan(self, inventory: vs.Inventory) -> tuple[str | None, str | None, str | None]:
        """(previous, next, refusal) of a cut from main under this inventory; writes nothing."""
        plan = plan_main(self.project, cast(gitops.Workspace, self.ws), inventory, self.head, self.merged)
        if plan.nxt is None:
            return None, None, plan.refusal.message if plan.refusal else "No release can be cut from main."
        previous = str(plan.nxt.previous) if plan.nxt.previous else None
        return previous, str(plan.nxt.version), None


def _with(base: vs.TagRules, legacy: Sequence[str] = (), ignore: Sequence[str] = ()) -> vs.TagRules:
    return vs.TagRules(template=base.template, legacy=(*base.legacy, *legacy), ignore=(*base.ignore, *ignore))


def _builtins_in_use(inventory: vs.Inventory) -> list[str]:
    """The built-in legacy forms that read at least one of the repository's tags."""
    legacy_names = [c.name for c in inventory.recognised if c.status is vs.TagStatus.LEGACY]
    kept = []
    for rule in vs.DEFAULT_LEGACY:
        try:
            rx = re.compile(rule)
        except re.error:  # a form Python's re cannot read: keep it rather than guess
            kept.append(rule)
            continue
        if any(rx.fullmatch(n) for n in legacy_names):
            kept.append(rule)
    return kept


def _template_for(example: str) -> str | None:
    """`product-8_21_0` -> `product-{major}_{minor}_{patch}` when that is a valid template."""
    parts = re.split(r"(\d+)", example)
    if len(parts) != 7:
        return None
    template = "".join(p if i % 2 == 0 else "{" + ("major", "minor", "patch")[i // 2] + "}"
                       for i, p in enumerate(parts))
    try:
        vs.TagRules(template=template)
    except ValueError:
        return None
    return template


def _proposals(base: vs.TagRules, inventory: vs.Inventory) -> tuple[list[vs.TagShape], list[str], list[str], int]:
    """The unknown shapes shown (largest first, as the domain judged them: a shape carrying
    versions read already, by the rules or by a larger shape's rule, is a variant to ignore),
    the legacy and ignore rules they add, and how many smaller shapes were left out."""
    all_shapes = vs.tag_shapes(inventory)
    shown = []
    for shape in all_shapes[:SHAPE_LIMIT]:
        try:
            _with(base, **{"legacy" if shape.kind == "legacy" else "ignore": [shape.proposed]})
        except ValueError:
            continue  # a proposal the rules refuse is no proposal
        shown.append(shape)
    legacy = [s.proposed for s in shown if s.kind == "legacy"]
    ignore = [s.proposed for s in shown if s.kind != "legacy"]
    return shown, legacy, ignore, len(all_shapes) - len(shown)


def _shape_items(main: _Main, base: vs.TagRules, inventory: vs.Inventory, shapes: list[vs.TagShape],
                 proposed: vs.Inventory) -> list[dict[str, Any]]:
    """Each shape as the page shows it: for the largest, what main would get under its rule
    alone; for a variant, one of its tags beside the release whose numbers it carries."""
    members: dict[str, list[str]] = {}
    for c in inventory.unknown:
        members.setdefault(vs.tag_shape(c.name), []).append(c.name)
    items = []
    for i, shape in enumerate(shapes):
        item: dict[str, Any] = {"shape": shape.shape, "count": shape.count, "examples": list(shape.examples),
                                "kind": shape.kind, "key": shape.key, "proposed": shape.proposed, "beside": None,
                                "next_version": None, "next_follows": None, "next_refusal": None}
        if i < PREVIEWED_SHAPES:
            key = "legacy" if shape.kind == "legacy" else "ignore"
            under = vs.inventory(main.tags, _with(base, **{key: [shape.proposed]}))
            item["next_follows"], item["next_version"], item["next_refusal"] = main.plan(under)
        if shape.kind == "variant":
            for name in sorted(members.get(shape.shape, ())):
                version = _numbers(name)
                release = proposed.tags_for(version) if version is not None else ()
                if release:
                    item["beside"] = {"tag": name, "release_tag": release[0].name, "version": str(version)}
                    break
        items.append(item)
    return items


def _numbers(name: str) -> Version | None:
    """The version a tag's first two or three numbers would make (`lite-1_4_0` -> 1.4.0)."""
    nums = [int(n) for n in re.findall(r"[0-9]+", name)[:3]]
    return Version(nums[0], nums[1], nums[2] if len(nums) > 2 else 0) if len(nums) >= 2 else None


def _by_version(inventory: vs.Inventory) -> dict[Version, list[vs.ClassifiedTag]]:
    """The recognised tags grouped by version, in one pass (tags_for per version is quadratic)."""
    out: dict[Version, list[vs.ClassifiedTag]] = {}
    for c in inventory.recognised:
        if c.version is not None:
            out.setdefault(vs.version_key(c.version), []).append(c)
    return out


def _conflicts(project: Project, inventory: vs.Inventory, merged: set[str]) -> list[dict[str, Any]]:
    """Two tags for one version, and X.Y.0 releases off main, each with how to settle it."""
    out: list[dict[str, Any]] = []
    for c in inventory.conflicts:
        names = [t.name for t in c.tags]
        out.append({"kind": "same_version", "version": str(c.version), "tags": names, "commits": list(c.shas),
                    "settle": f"{', '.join(names)} all stand for {c.version} on different commits, so none "
                              "is adopted: delete or rename the tags that are not the release, or add an "
                              "ignore rule for their form."})
    main = project.main_branch
    conflicted = {c.version for c in inventory.conflicts}
    for version, tags in sorted(_by_version(inventory).items(), key=lambda vt: vs.precedence(vt[0])):
        if version.patch or version.prerelease or version in conflicted:
            continue  # hotfixes live off main by design
        if any(t.name in merged for t in tags):
            continue
        names = [t.name for t in tags]
        out.append({"kind": "not_on_main", "version": str(version), "tags": names,
                    "commits": list(dict.fromkeys(t.tag.sha for t in tags)),
                    "settle": f"{names[0]} ({version}) is not on {main}: it was cut from a branch that never "
                              f"merged back, so {main} does not follow it. Merge that branch into {main} if "
                              "its changes belong there; if it was never a release, add an ignore rule for it."})
    return out


def _variants(shapes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shapes carrying other releases' numbers (another product, a suffixed one-off)."""
    out = []
    for s in shapes:
        if s["kind"] != "variant":
            continue
        pair = s["beside"]
        example = f"{pair['tag']} beside {pair['release_tag']}" if pair else s["examples"][0]
        plural = "s" if s["count"] != 1 else ""
        out.append({"kind": "variant", "version": pair["version"] if pair else "",
                    "tags": [pair["tag"], pair["release_tag"]] if pair else list(s["examples"]), "commits": [],
                    "settle": f"{s['shape']} ({s['count']} tag{plural}, e.g. {example}) carries the numbers of "
                              "other releases: it is another product or a one-off, not a release of this one; "
                              f"add the ignore rule {s['proposed']} (it is in the snippet)."})
    return out


def _snippet(project: Project, inventory: vs.Inventory, legacy_new: list[str],
             ignore_new: list[str], shapes: list[vs.TagShape]) -> tuple[str | None, str | None]:
    """The TOML lines to add to the project's table, and what to know about them."""
    if not legacy_new and not ignore_new:
        return None, None
    notes = []
    legacy: list[str] = []
    if legacy_new:
        if project.legacy_tags is None:
            # Setting legacy_tags replaces the built-in forms: keep those that read a tag here.
            legacy = _builtins_in_use(inventory)
            notes.append("legacy_tags replaces relapp's built-in forms (v1.2, 1.2.3, release-1.4.0, rel_1_4_0), "
                         f"so the list keeps the {len(legacy)} of {len(vs.DEFAULT_LEGACY)} that read tags in "
                         "this repository and adds the new rules.")
        else:
            legacy = list(project.legacy_tags)
            notes.append("The list is the project's legacy_tags with the new rules added at the end.")
        legacy += legacy_new
    ignore = [*(project.ignore_tags or ()), *ignore_new]
    text = vs.toml_snippet(legacy if legacy_new else (), ignore if ignore_new else ())
    canonical = any(c.status is vs.TagStatus.CANONICAL for c in inventory.recognised)
    top = next((s for s in shapes if s.kind == "legacy"), None)
    template = _template_for(top.examples[0]) if top and top.examples and not canonical else None
    if template is not None and template != project.tag_template:
        notes.append(f"New tags follow the template {project.tag_template}, which reads none of the existing "
                     f"tags; to keep this repository's style, also set tag_template = \"{template}\" (the "
                     "commented line).")
        text = f'# tag_template = "{template}"\n{text}'
    notes.append(f"Put these lines in the [[projects]] table whose key is \"{project.key}\".")
    return text, " ".join(notes)


def _listing(inventory: vs.Inventory) -> dict[str, Any]:
    recognised = sorted(inventory.recognised, key=lambda c: (vs.precedence(c.version), c.name),  # type: ignore[arg-type]
                        reverse=True)
    return {
        "recognised": [{"tag": c.name, "version": str(c.version), "commit": c.tag.sha, "rule": c.status.value}
                       for c in recognised[:LIST_LIMIT]],
        "recognised_count": len(recognised),
        "ignored": [{"tag": c.name, "reason": c.reason} for c in inventory.ignored[:LIST_LIMIT]],
        "ignored_count": len(inventory.ignored),
        "unknown": [{"tag": c.name, "reason": c.reason} for c in inventory.unknown[:LIST_LIMIT]],
        "unknown_count": len(inventory.unknown),
    }


def adopt_report(project: Project) -> AdoptionReport:
    """What relapp makes of the repository's tags, the rules that would read the rest (and what
    main would get under them), the conflicts to settle and the TOML to add; writes nothing."""
    try:
        base = rules(project)
    except ValueError as exc:
        raise ServiceError(f"The project's tag rules cannot be used: {exc}", code="invalid_rules") from None
    try:
        ws, fetch_error = read_clone(project)
        inventory = vs.inventory_of(ws, base)
        tags = [c.tag for c in inventory.classified]  # what ws.tags() lists, in its order
        head = ws.resolve(project.main_branch)
        main = _Main(project, _ReadOnce(ws), tags, head, ws.tags_merged(head))
        main_follows, main_next, main_refusal = main.plan(inventory)
        shapes, legacy_new, ignore_new, more_shapes = _proposals(base, inventory)
        proposed = vs.inventory(tags, _with(base, legacy_new, ignore_new)) if shapes else inventory
        items = _shape_items(main, base, inventory, shapes, proposed)
        proposed_next = proposed_refusal = None
        if shapes:
            _, proposed_next, proposed_refusal = main.plan(proposed)
    except gitops.GitError as exc:
        raise _git_error(exc) from None
    conflicts = [{**c, "with_rules_to_add": False} for c in _conflicts(project, inventory, main.merged)]
    now = {(c["kind"], c["version"]) for c in conflicts}
    conflicts += [{**c, "with_rules_to_add": True} for c in _conflicts(project, proposed, main.merged)
                  if (c["kind"], c["version"]) not in now]
    conflicts += [{**c, "with_rules_to_add": False} for c in _variants(items)]
    understanding = inventory.understanding()
    snippet, snippet_note = _snippet(project, inventory, legacy_new, ignore_new, shapes)
    return AdoptionReport(
        version_like=understanding.version_like, read=understanding.read,
        not_understood=understanding.not_understood, refusal=understanding.refusal(),
        shapes=items, more_shapes=more_shapes, conflicts=conflicts,
        snippet=snippet, snippet_note=snippet_note, proposed_next=proposed_next, proposed_refusal=proposed_refusal,
        **_listing(inventory),
        main_follows=main_follows, main_next=main_next, main_refusal=main_refusal, fetch_error=fetch_error,
    )


# --- recording adopted releases ------------------------------------------------------------

def _contained(graph: Mapping[str, tuple[str, ...]], bits: Mapping[str, int]) -> dict[str, int]:
    """For each commit of the tag graph, the bits of every tagged commit it contains (itself too).

    Iterative, parents first: a history thousands of releases deep must not hit the recursion
    limit, and each commit's set is built once from its parents' sets.
    """
    masks: dict[str, int] = {}
    for start in graph:
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            sha, ready = stack.pop()
            if sha in masks:
                continue
            parents = graph.get(sha, ())
            if ready:
                mask = bits.get(sha, 0)
                for p in parents:
                    mask |= masks.get(p, 0)
                masks[sha] = mask
            else:
                stack.append((sha, True))
                stack.extend((p, False) for p in parents if p not in masks)
    return masks


def follows_by_reachability(versions: Sequence[Version], sha_of: Mapping[Version, str],
                            graph: Mapping[str, tuple[str, ...]]) -> dict[Version, Version | None]:
    """The release each version follows: the highest lower version whose tag commit its own tag
    commit contains, so a release on a branch that never merged back is nobody's predecessor.
    For a hotfix (X.Y.Z, Z > 0) the highest such version of its own line comes first.

    `versions` are stable and distinct; `graph` is Workspace.tag_graph's.
    """
    ordered = sorted(versions, key=vs.precedence)
    rank = {v: i for i, v in enumerate(ordered)}
    bits: dict[str, int] = {}
    lines: dict[tuple[int, int], int] = {}
    for v, i in rank.items():
        bits[sha_of[v]] = bits.get(sha_of[v], 0) | 1 << i
        lines[vs.line_of(v)] = lines.get(vs.line_of(v), 0) | 1 << i
    masks = _contained(graph, bits)
    out: dict[Version, Version | None] = {}
    for v in ordered:
        sha = sha_of[v]
        below = masks.get(sha, bits[sha]) & ((1 << rank[v]) - 1)
        if v.patch and below & lines[vs.line_of(v)]:
            below &= lines[vs.line_of(v)]
        out[v] = ordered[below.bit_length() - 1] if below else None
    return out


def adopt_into_db(key: str, *, actor: User | str | None = "cli") -> list[Release]:
    """Record recognised stable tags as adopted releases (idempotent), each following the release
    it was built on; conflicts stay for a person. Adopted releases recorded before with another
    predecessor are corrected."""
    project = get_project(key)
    try:
        base = rules(project)
    except ValueError as exc:
        raise ServiceError(f"The project's tag rules cannot be used: {exc}", code="invalid_rules") from None
    try:
        ws = workspace(project)
        with _locked(ws):
            ws.ensure()
            ws.fetch()
            inventory = vs.inventory_of(ws, base)
            conflicted = {c.version for c in inventory.conflicts}
            # The tag each stable version is adopted from: the template's form first.
            chosen = {v: min(tags, key=lambda c: (c.status != vs.TagStatus.CANONICAL, c.name))
                      for v, tags in _by_version(inventory).items() if not v.prerelease and v not in conflicted}
            stable = list(chosen)
            sha_of = {v: c.tag.sha for v, c in chosen.items()}
            graph = ws.tag_graph(set(sha_of.values()))
    except gitops.GitError as exc:
        raise _git_error(exc) from None
    follows = follows_by_reachability(stable, sha_of, graph)
    rows = {r.version: r for r in db.session.scalars(select(Release).where(Release.project_id == project.id))}
    known = len(rows)
    created: list[Release] = []
    corrected: list[str] = []
    links: list[tuple[Release, Release | None]] = []
    for version in sorted(stable, key=vs.precedence):
        previous = follows[version]
        before = rows.get(str(previous)) if previous is not None else None
        kind = vs.release_kind(version, previous)
        existing = rows.get(str(version))
        if existing is not None:
            # By id, so re-adopting thousands of releases loads none of their predecessors; a
            # predecessor made in this run has no id yet and is a change by definition.
            want = before.id if before is not None else None
            moved = existing.follows_id != want or (before is not None and want is None)
            if existing.source == "adopted" and (moved or existing.kind != kind):
                existing.kind = kind
                links.append((existing, before))
                corrected.append(str(version))
            continue
        tag = chosen[version]
        release = Release(project_id=project.id, version=str(version), major=version.major, minor=version.minor,
                          patch=version.patch, kind=kind, source="adopted", tag=tag.name, sha=tag.tag.sha,
                          state="tagged", tagged_at=utcnow(), details={"adopted_from": tag.name,
                                                                       "rule": tag.status.value})
        db.session.add(release)
        rows[release.version] = release
        created.append(release)
        links.append((release, before))
    # Rows first, links after: inserts that refer to rows of the same flush make the ORM order
    # them one by one (a minute for 5,000 tags); without them they go in one batch.
    db.session.flush()
    for release, before in links:
        release.follows_id = before.id if before is not None else None
    if created or corrected:
        audit.record(actor, "release.adopt", project_id=project.id, target=f"project:{project.key}",
                     after={"versions": [r.version for r in created], "follows_corrected": corrected},
                     detail=f"{len(created)} existing tag(s) adopted; {known} already known; "
                            f"{len(corrected)} predecessor(s) corrected by reachability")
    db.session.commit()
    return created
