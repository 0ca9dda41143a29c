"""relapp's clone of a project's remote: fetch, read tags and commits, tag, push, cherry-pick."""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import os
import re
import secrets as _secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from relapp.domain.gitdata import RawCommit, TagRef

from .errors import (
    CherryPickConflict,
    CherryPickEmpty,
    GitError,
    PushRejected,
    TagConflict,
    UnsafeName,
    WorkspaceBusy,
)
from .logformat import LOG_OPTIONS, LogRecords, log_format
from .masking import (
    mask,
    redact_url,
    strip_userinfo,
    url_credentials,
    url_has_credentials,
    url_secrets,
)
from .names import (
    check_full_ref,
    check_ident,
    check_ref_syntax,
    check_refspec,
    is_sha,
    looks_like_sha,
    require_sha,
    validate_ref_name,
    validate_remote_url,
    validate_revision,
)
from .process import (
    DEFAULT_TIMEOUT,
    credential_env,
    decode,
    failure_message,
    run,
    run_streaming,
)

log = logging.getLogger(__name__)


def init_bare(path: Path) -> Path:
    """Create an empty bare repository at path (initial branch main)."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    run(["init", "--quiet", "--bare", "--initial-branch=main", "--", str(path)])
    return path


def fast_import(repo_path: Path, stream: bytes, *, timeout: float = 600) -> None:
    """Feed a `git fast-import` stream into the repository at repo_path (bare or not)."""
    repo_path = Path(repo_path).absolute()
    git_dir = repo_path / ".git" if (repo_path / ".git").is_dir() else repo_path
    run(["fast-import", "--quiet"], git_dir=git_dir, input=stream, timeout=timeout)


def clone_to(
    path: Path,
    remote: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> Path:
    """Clone remote (validated) into path with a work tree and a local relapp identity.

    Credentials in the URL are used for the clone through git's credential helper and never
    written to the clone's .git/config (see `credential_env`); `env` may carry others.
    """
    remote = validate_remote_url(remote)
    secrets = [*url_secrets(remote), *secrets]
    found = url_credentials(remote)
    if found is not None:
        env = {**credential_env(*found), **(env or {})}
    remote = strip_userinfo(remote)
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            "clone",
            "--quiet",
            "--no-checkout",
            "-c",
            "user.name=relapp",
            "-c",
            "user.email=relapp@localhost",
            "--",
            remote,
            str(path),
        ],
        timeout=timeout,
        env=env,
        secrets=secrets,
        what="cloning the project's remote",
    )
    return path


@dataclass(frozen=True)
class FetchResult:
    """What a fetch noticed: tags whose remote commit differs from ours (kept, not taken)."""

    moved_tags: tuple[str, ...] = field(default=())


# The fields Workspace.tags reads, one line per tag: refname, object type and name, the type and
# name of the object an annotated tag points to, tagger date, creator date. Separated by US
# (0x1f), which like a newline can never be in a ref name (git refuses control characters).
_TAG_FORMAT = (
    "%(refname) %(objecttype) %(objectname) %(*objecttype) %(*objectname)"
    " %(taggerdate:unix) %(creatordate:unix)"
).replace(" ", "%1f")
_TAG_FIELDS = 7
_tag_name = operator.attrgetter("name")


class _TagListing:
    """Turns `git for-each-ref` output in _TAG_FORMAT into TagRefs, fed in chunks as they arrive.

    Each chunk is cut after its last newline: the bytes before the cut are whole lines, the rest
    waits for more. A newline is ASCII, which always decodes to itself and ends any broken UTF-8
    sequence before it, so decoding and splitting piece by piece gives exactly what decoding and
    splitting the whole output at once would. Tags of tags are kept in `nested` for the caller to
    peel; tags of trees and blobs are not releases and are dropped.
    """

    __slots__ = ("_on_tags", "_pending", "nested", "tags")

    def __init__(self, on_tags: Callable[[list[TagRef]], None] | None) -> None:
        self._on_tags = on_tags
        self._pending = b""
        self.tags: list[TagRef] = []
        self.nested: list[tuple[str, int]] = []  # (name, created) of tags of tags

    def feed(self, data: bytes) -> None:
        """Take the next chunk of git's stdout; parse every line it completes."""
        buf = self._pending + data if self._pending else data
        cut = buf.rfind(b"\n") + 1
        if not cut:  # no line ends in this buffer yet
            self._pending = buf
            return
        self._pending = buf[cut:]
        self._parse(buf[: cut - 1].decode("utf-8", "replace"))

    def close(self) -> list[TagRef]:
        """Parse what is left once git has exited successfully; return every tag in git's order."""
        if self._pending:
            self._parse(self._pending.decode("utf-8", "replace"))
        self._pending = b""
        return self.tags

    def _parse(self, text: str) -> None:
        lines = text.count("\n") + 1
        fields = text.replace("\n", "\x1f").split("\x1f")
        if len(fields) == _TAG_FIELDS * lines:
            # Every line has its seven fields, as git writes them.
            batch = _tag_columns(fields, lines)
            if batch is None:
                it = iter(fields)
                batch = self._rows(zip(it, it, it, it, it, it, it, strict=True))
        else:
            rows = (ln.split("\x1f") for ln in text.split("\n"))
            batch = self._rows(f for f in rows if len(f) == _TAG_FIELDS)
        if batch:
            self.tags += batch
            if self._on_tags is not None:
                self._on_tags(batch)

    def _rows(self, rows: Iterable[Sequence[str]]) -> list[TagRef]:
        batch: list[TagRef] = []
        append = batch.append
        for ref, otype, oid, ptype, poid, tagger_date, creator_date in rows:
            try:
                created = int(tagger_date)
            except ValueError:
                created = 0
            if not created:
                created = _int(creator_date)
            if otype == "tag":
                if ptype == "commit":
                    append(TagRef(ref.removeprefix("refs/tags/"), poid, True, created))
                elif ptype == "tag":
                    self.nested.append((ref.removeprefix("refs/tags/"), created))
            elif otype == "commit":
                append(TagRef(ref.removeprefix("refs/tags/"), oid, False, created))
        return batch


def _tag_columns(fields: list[str], lines: int) -> list[TagRef] | None:
    """The usual chunk read a column at a time, which is cheaper than line by line: every tag
    annotated and of a commit (dated by its tagger), or every tag lightweight (dated by its
    commit). None for any other chunk, and for a missing date, which _TagListing._rows settles."""
    if fields[1::_TAG_FIELDS].count("tag") == lines:
        if fields[3::_TAG_FIELDS].count("commit") != lines:
            return None
        shas, dates, annotated = fields[4::_TAG_FIELDS], fields[5::_TAG_FIELDS], True
    elif fields[1::_TAG_FIELDS].count("commit") == lines:
        # A commit has no tagger: git leaves %(taggerdate) empty and %(creatordate) dates it.
        shas, dates, annotated = fields[2::_TAG_FIELDS], fields[6::_TAG_FIELDS], False
    else:
        return None
    try:
        created = list(map(int, dates))
    except ValueError:
        return None
    if 0 in created:
        return None
    names = [ref.removeprefix("refs/tags/") for ref in fields[0::_TAG_FIELDS]]
    return list(map(TagRef, names, shas, itertools.repeat(annotated), created))


_REJECT_LINE = re.compile(r"^\s*!\s*\[rejected\]\s+(\S+)\s+->\s+(\S+)\s+\((.*)\)\s*$")


class Workspace:
    """relapp's own clone of one project's remote, with a lock shared by web and worker processes.

    Credentials never reach the clone's .git/config: origin is the remote URL without its
    userinfo, and a git process that talks to the remote gets them through a credential helper
    that reads its own environment (`process.credential_env`). They come from the environment
    variable named `credentials_env` (holding `user:token`, or a token alone), else from the URL
    itself (an old configuration); a clone made before this keeps them no longer than its next
    `ensure` or fetch.
    """

    def __init__(
        self,
        path: Path,
        remote_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        credentials_env: str | None = None,
    ) -> None:
        """Describe the clone at path of remote_url; `env` is added to every git process's."""
        self.path = Path(path).absolute()
        self.remote_url = validate_remote_url(remote_url)
        self.origin_url = strip_userinfo(self.remote_url)
        self.timeout = timeout
        self._env = dict(env or {})
        self._secrets = url_secrets(self.remote_url) + [v for v in self._env.values() if v]
        self._credentials, self._credentials_problem = _credentials(
            self.remote_url, credentials_env
        )
        if self._credentials is not None:
            user, password = self._credentials
            self._secrets += [p for p in (password, f"{user}:{password}") if len(p) >= 3]
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r}, {redact_url(self.remote_url)!r})"

    @property
    def git_dir(self) -> Path:
        """The clone's .git directory."""
        return self.path / ".git"

    # -- plumbing

    def _git(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        what: str = "",
        timeout: float | None = None,
        remote: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run git on the clone; `remote` for a process that talks to origin (credentials)."""
        merged = {**self._env, **(env or {})}
        if remote:
            merged.update(self._credential_env())
        return run(
            args,
            git_dir=self.git_dir,
            work_tree=self.path,
            input=input,
            env=merged or None,
            timeout=self.timeout if timeout is None else timeout,
            check=check,
            secrets=self._secrets,
            what=what,
        )

    def _mask(self, text: str) -> str:
        return mask(text, self._secrets)

    def _credential_env(self) -> dict[str, str]:
        """The credential variables of a git process that talks to origin (none if not needed)."""
        if self._credentials_problem:
            raise GitError(self._credentials_problem)
        if self._credentials is None:
            return {}
        return credential_env(*self._credentials)

    def _scrub_origin(self) -> None:
        """Take credentials an older relapp wrote into .git/config out of it (one git call, and
        only when the file holds some)."""
        try:
            config = (self.git_dir / "config").read_text("utf-8", "replace")
        except OSError:
            return
        if any(
            url_has_credentials(line.split("=", 1)[1].strip())
            for line in config.splitlines()
            if line.strip().startswith(("url", "pushurl")) and "=" in line
        ):
            self._git(
                ["remote", "set-url", "--", "origin", self.origin_url],
                what="taking credentials out of the clone's remote",
            )
            self._git(
                ["config", "--unset-all", "remote.origin.pushurl"],
                check=False,
                what="taking credentials out of the clone's remote",
            )

    # -- lifecycle

    @contextlib.contextmanager
    def lock(self, timeout: float = 300) -> Iterator[None]:
        """Hold the clone's file lock (shared by threads and processes) for the block."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh FileLock each time: separate descriptors make threads exclude each other too.
        lk = filelock.FileLock(str(self.lock_path), timeout=timeout)
        try:
            lk.acquire()
        except filelock.Timeout:
            raise WorkspaceBusy(
                f"The clone of {redact_url(self.remote_url)} is busy with another job; "
                "try again in a moment."
            ) from None
        try:
            yield
        finally:
            lk.release()

    def exists(self) -> bool:
        """True when the clone is present (no git call)."""
        return (self.git_dir / "HEAD").is_file()

    def ensure(self) -> None:
        """Clone the remote if the clone is missing; point origin at the configured URL."""
        if self.exists():
            self._git(
                ["remote", "set-url", "--", "origin", self.origin_url],
                what="updating the clone's remote",
            )
            self._scrub_origin()  # a push URL with credentials, from someone's hand
            return
        if self.path.exists():
            # A half-made clone from a crash: it is ours, start again.
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Clone beside the target and rename, so a crash never leaves a half clone in place.
        tmp = Path(tempfile.mkdtemp(prefix=self.path.name + ".tmp-", dir=self.path.parent))
        try:
            clone_to(
                tmp / "c",
                self.origin_url,
                timeout=self.timeout,
                env={**self._env, **self._credential_env()} or None,
                secrets=self._secrets,
            )
            os.rename(tmp / "c", self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @property
    def _fetch_stamp(self) -> Path:
        return self.git_dir / "relapp-fetched"

    def fetched_at(self) -> float | None:
        """When the last successful fetch ended (a Unix time), or None if never."""
        try:
            return self._fetch_stamp.stat().st_mtime
        except OSError:
            return None

    def _fetch_lock(self, timeout: float) -> filelock.FileLock:
        # Its own lock, apart from the clone's: reading refs and commits is safe while a fetch
        # writes them (git updates each ref atomically), so readers never wait behind a fetch.
        return filelock.FileLock(str(self.path.with_name(self.path.name + ".fetch.lock")), timeout=timeout)

    def fetch(self) -> FetchResult:
        """Fetch branches and tags from origin, pruning; tags moved on the remote are reported.

        One fetch at a time per clone: a second one waits for the first (at most the git
        timeout, which bounds the first) and then fetches again.
        """
        lk = self._fetch_lock(self.timeout + 10)
        try:
            lk.acquire()
        except filelock.Timeout:
            raise WorkspaceBusy(
                f"The clone of {redact_url(self.remote_url)} is busy fetching; try again in a moment."
            ) from None
        try:
            return self._fetch()
        finally:
            lk.release()

    def fetch_if_older(self, max_age: float) -> FetchResult | None:
        """Fetch unless the last fetch ended less than max_age seconds ago or another one is
        running right now (then the caller reads what is there: it never waits behind it).
        Returns None when no fetch was made."""
        last = self.fetched_at()
        if last is not None and time.time() - last < max_age:
            return None
        lk = self._fetch_lock(0)
        try:
            lk.acquire()
        except filelock.Timeout:
            return None
        try:
            return self._fetch()
        finally:
            lk.release()

    def _fetch(self) -> FetchResult:
        self._scrub_origin()
        proc = self._git(
            [
                "fetch",
                "--prune",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "origin",
                "--end-of-options",
                "+refs/heads/*:refs/remotes/origin/*",
                # Not forced: a tag moved on the remote is refused ("would clobber") and reported.
                "refs/tags/*:refs/tags/*",
            ],
            check=False,
            what="fetching from the project's remote",
            remote=True,
        )
        err = decode(proc.stderr)
        moved: list[str] = []
        other_rejections: list[str] = []
        for line in err.splitlines():
            m = _REJECT_LINE.match(line)
            if not m:
                continue
            if "clobber existing tag" in m.group(3):
                moved.append(m.group(2))
            else:
                other_rejections.append(line.strip())
        if proc.returncode != 0 and (other_rejections or not moved):
            raise GitError(
                failure_message("fetching from the project's remote", proc.stderr, self._secrets)
            )
        if moved:
            log.warning(
                "tags moved on remote %s and were kept at their old commit: %s",
                redact_url(self.remote_url),
                ", ".join(moved),
            )
        self._fetch_stamp.touch()
        return FetchResult(moved_tags=tuple(sorted(moved)))

    # -- reads

    def resolve(self, rev: str) -> str:
        """Resolve a user-given revision (SHA, tag or branch of origin) to a full commit SHA."""
        rev = validate_revision(rev)
        if looks_like_sha(rev):
            # A hex-looking name may still be a branch or tag.
            candidates = [rev, f"refs/remotes/origin/{rev}", f"refs/tags/{rev}"]
        elif rev.startswith("refs/"):
            candidates = [rev]
        elif rev.startswith("origin/"):
            candidates = [f"refs/remotes/{rev}", f"refs/tags/{rev}"]
        else:
            candidates = [f"refs/remotes/origin/{rev}", f"refs/tags/{rev}"]
        for cand in candidates:
            proc = self._git(
                ["rev-parse", "--verify", "--quiet", "--end-of-options", cand + "^{commit}"],
                check=False,
                what="resolving a revision",
            )
            sha = decode(proc.stdout).strip()
            if proc.returncode == 0 and is_sha(sha):
                return sha
        raise GitError(
            f"Unknown revision {rev!r}: no commit, tag or branch of the remote has that name. "
            "Check the spelling, or fetch if it was pushed just now."
        )

    def tags(self, on_tags: Callable[[list[TagRef]], None] | None = None) -> list[TagRef]:
        """Every tag peeled to its commit, sorted by name, from one `git for-each-ref` (tags of
        trees and blobs dropped; tags of tags peeled by one more batch call).

        on_tags, when given, is called with the tags a batch at a time as soon as git has written
        them, in git's order (by name), so the caller's work overlaps git's listing instead of
        following it; the tags of tags, peeled once the listing has ended, come in a last batch.
        """
        listing = _TagListing(on_tags)
        run_streaming(
            ["for-each-ref", f"--format={_TAG_FORMAT}", "refs/tags"],
            listing.feed,
            git_dir=self.git_dir,
            work_tree=self.path,
            env=self._env or None,
            timeout=self.timeout,
            secrets=self._secrets,
            what="listing tags",
        )
        out = listing.close()
        nested = listing.nested
        if nested:
            # A tag of a tag (rare): one more batch call peels them all the way.
            query = "".join(f"refs/tags/{n}^{{commit}}\n" for n, _ in nested).encode()
            proc = self._git(
                ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                input=query,
                what="peeling nested tags",
            )
            peeled: list[TagRef] = []
            for (name, created), line in zip(
                nested, decode(proc.stdout).splitlines(), strict=False
            ):
                sha, _, kind = line.partition(" ")
                if kind == "commit" and is_sha(sha):
                    peeled.append(TagRef(name, sha, True, created))
            if peeled and on_tags is not None:
                on_tags(peeled)
            out += peeled
        # git lists by name already (bytewise, which is code point order in UTF-8): this sort
        # only places the peeled tags of tags, and keeps the promise if git ever differs.
        out.sort(key=_tag_name)
        return out

    def tags_merged(self, sha: str) -> set[str]:
        """Names of the tags whose commit is reachable from sha (one `for-each-ref --merged`)."""
        sha = require_sha(sha)
        proc = self._git(
            ["for-each-ref", f"--merged={sha}", "--format=%(refname:lstrip=2)", "refs/tags"],
            what="listing reachable tags",
        )
        return {ln for ln in decode(proc.stdout).splitlines() if ln}

    def commits(
        self,
        include: str,
        exclude: Sequence[str] = (),
        on_commit: Callable[[RawCommit], None] | None = None,
    ) -> list[RawCommit]:
        """Commits reachable from include but from none of exclude, children first (one git log).

        on_commit, when given, is called with each commit, in the same order, as soon as git
        has written it: the caller's work overlaps git's walk instead of following it.
        """
        include = require_sha(include)
        excluded = [require_sha(x) for x in exclude]
        return self._log(["--topo-order", include, *(f"^{x}" for x in excluded)], on_commit)

    def show(self, shas: Sequence[str]) -> list[RawCommit]:
        """Exactly these commits, in the order given (one git log --no-walk)."""
        wanted = [require_sha(x) for x in shas]
        if not wanted:
            return []
        return self._log(["--no-walk=unsorted", *wanted])

    def _log(
        self, revisions: list[str], on_commit: Callable[[RawCommit], None] | None = None
    ) -> list[RawCommit]:
        options = [r for r in revisions if r.startswith("--")]
        revs = [r for r in revisions if not r.startswith("--")]
        token = _secrets.token_hex(12)
        records = LogRecords(token, on_commit)
        merged = {**self._env}
        # One git process, streamed: complete records are decoded while git is still walking
        # (with the cycle collector held off: see LogRecords).
        with records:
            run_streaming(
                [
                    "log",
                    *LOG_OPTIONS,
                    *options,
                    f"--format={log_format(token)}",
                    "--end-of-options",
                    *revs,
                    "--",
                ],
                records.feed,
                git_dir=self.git_dir,
                work_tree=self.path,
                env=merged or None,
                timeout=self.timeout,
                secrets=self._secrets,
                what="reading commits",
            )
            return records.close()

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when ancestor is reachable from descendant (or equal to it)."""
        a, d = require_sha(ancestor), require_sha(descendant)
        proc = self._git(
            ["merge-base", "--is-ancestor", "--end-of-options", a, d],
            check=False,
            what="checking ancestry",
        )
        if proc.returncode in (0, 1):
            return proc.returncode == 0
        raise GitError(failure_message("checking ancestry", proc.stderr, self._secrets))

    def patch_ids(self, shas: Iterable[str]) -> dict[str, str]:
        """Stable patch id of each commit (merges and empty commits have none): two processes."""
        wanted = [require_sha(s) for s in shas]
        if not wanted:
            return {}
        diff = self._git(
            [
                "log",
                "--stdin",
                "--no-walk=unsorted",
                "-p",
                "--no-renames",
                "--no-ext-diff",
                "--no-textconv",
                "--format=commit %H",
            ],
            input="".join(s + "\n" for s in wanted).encode(),
            what="reading patches",
        )
        ids = self._git(["patch-id", "--stable"], input=diff.stdout, what="computing patch ids")
        result: dict[str, str] = {}
        for line in decode(ids.stdout).splitlines():
            pid, _, sha = line.partition(" ")
            if is_sha(sha):
                result[sha] = pid
        return result

    def cherry(self, upstream: str, head: str) -> dict[str, bool]:
        """For commits in head but not upstream: whether an equivalent patch is in upstream."""
        up, hd = require_sha(upstream), require_sha(head)
        proc = self._git(
            ["cherry", "--end-of-options", up, hd], what="comparing with the upstream line"
        )
        out: dict[str, bool] = {}
        for line in decode(proc.stdout).splitlines():
            mark, _, sha = line.partition(" ")
            if is_sha(sha) and mark in "+-":
                out[sha] = mark == "-"
        return out

    def remote_ref(self, ref: str) -> tuple[str, str] | None:
        """(object, peeled commit) of one full ref on origin, from one `git ls-remote`."""
        check_full_ref(ref)
        proc = self._git(
            # The peeled pattern must be asked for too, or ls-remote leaves that line out.
            ["ls-remote", "--end-of-options", "origin", ref, ref + "^{}"],
            what="asking the remote about a ref",
            remote=True,
        )
        obj = peeled = ""
        for line in decode(proc.stdout).splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                obj = sha
            elif name == ref + "^{}":
                peeled = sha
        if not obj:
            return None
        return obj, peeled or obj

    def _local_tag(self, name: str) -> tuple[str, str] | None:
        """(object, peeled commit) of a local tag, or None."""
        ref = f"refs/tags/{name}"
        fmt = "%(refname)%1f%(objectname)%1f%(*objectname)"
        proc = self._git(["for-each-ref", f"--format={fmt}", ref], what="reading a tag")
        for line in decode(proc.stdout).splitlines():
            r, obj, peeled = (line.split("\x1f") + ["", "", ""])[:3]
            if r == ref:
                return obj, peeled or obj
        return None

    # -- writes

    def create_tag(
        self, name: str, sha: str, message: str, tagger_name: str, tagger_email: str
    ) -> str:
        """Create annotated tag name at sha as the tagger (idempotent); return `refs/tags/<name>`."""
        check_ref_syntax(name, "tag")  # every pure check first, before git runs at all
        sha = require_sha(sha)
        tagger_name = check_ident(tagger_name, "tagger name")
        tagger_email = check_ident(tagger_email, "tagger email")
        name = validate_ref_name(name, kind="tag")
        ref = f"refs/tags/{name}"
        remote = self.remote_ref(ref)
        local = self._local_tag(name)
        if remote is not None:
            if remote[1] != sha:
                raise TagConflict(
                    f"Tag {name} already exists on the remote at commit {remote[1][:12]}, "
                    f"not {sha[:12]}; it is never moved. Choose another version or settle it by hand.",
                    tag=name,
                    existing_sha=remote[1],
                )
            if local is None or local[0] != remote[0]:
                # Ours is missing or differs only in the tag object: take the published one.
                self._git(
                    [
                        "fetch",
                        "--no-write-fetch-head",
                        "origin",
                        "--end-of-options",
                        f"+{ref}:{ref}",
                    ],
                    what="fetching an existing tag",
                    remote=True,
                )
            return ref
        if local is not None:
            if local[1] == sha:
                return ref
            raise TagConflict(
                f"Tag {name} exists in relapp's clone at commit {local[1][:12]}, not {sha[:12]}, "
                "though not on the remote; fetch and try again.",
                tag=name,
                existing_sha=local[1],
            )
        text = message.strip() or f"Release {name}"
        self._git(
            [
                "tag",
                "--annotate",
                "--no-sign",
                "--cleanup=whitespace",
                "--file=-",
                "--end-of-options",
                name,
                sha,
            ],
            input=text.encode("utf-8") + b"\n",
            env={
                "GIT_COMMITTER_NAME": tagger_name,
                "GIT_COMMITTER_EMAIL": tagger_email,
            },
            what=f"creating tag {name}",
        )
        return ref

    def push(self, refspecs: Sequence[str]) -> None:
        """Push full refspecs atomically without force; raise PushRejected unless every ref landed."""
        if isinstance(refspecs, str):
            raise UnsafeName("push takes a list of refspecs, not one string.")
        pairs = [check_refspec(s) for s in refspecs]
        if not pairs:
            return
        proc = self._git(
            [
                "push",
                "--atomic",
                "--porcelain",
                "--no-verify",
                "origin",
                "--end-of-options",
                *(f"{s}:{d}" for s, d in pairs),
            ],
            check=False,
            what="pushing to the project's remote",
            remote=True,
        )
        results: dict[str, tuple[str, str]] = {}
        for line in decode(proc.stdout).splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and len(parts[0]) == 1:
                flag, spec, summary = parts[0], parts[1], "\t".join(parts[2:])
                dst = spec.rsplit(":", 1)[-1]
                results[dst] = (flag, summary)
        failures: list[tuple[str, str]] = []
        for _, dst in pairs:
            flag, summary = results.get(dst, ("?", ""))
            if flag in (" ", "*", "="):  # fast-forward, new ref, up to date (an idempotent retry)
                continue
            reason = self._mask(summary) or "the remote did not confirm it"
            if flag == "?":
                reason = failure_message("push", proc.stderr, self._secrets)
            failures.append((dst, reason))
        if failures:
            # With --atomic every ref fails; name the one that caused it, not a bystander.
            failures.sort(key=lambda f: "atomic push fail" in f[1])
            dst, reason = failures[0]
            raise PushRejected(
                f"The remote refused {dst}: {reason}. Nothing was forced; fetch and try again.",
                ref=dst,
                reason=reason,
            )
        if proc.returncode != 0:
            raise GitError(
                failure_message("pushing to the project's remote", proc.stderr, self._secrets)
            )

    def hotfix_branch(self, branch: str, base_sha: str) -> str:
        """Ensure release branch exists on origin; return its head (created at base_sha if new)."""
        check_ref_syntax(branch, "branch")
        base_sha = require_sha(base_sha)
        branch = validate_ref_name(branch, kind="branch")
        ref = f"refs/heads/{branch}"
        remote = self.remote_ref(ref)
        if remote is not None:
            # Make sure we hold its objects, even if it was pushed after our last fetch.
            self._git(
                [
                    "fetch",
                    "--no-write-fetch-head",
                    "origin",
                    "--end-of-options",
                    f"+{ref}:refs/remotes/origin/{branch}",
                ],
                what=f"fetching branch {branch}",
                remote=True,
            )
            return remote[1]
        self.push([f"{base_sha}:{ref}"])
        return base_sha

    def _cherry_pick_state(self) -> bool:
        return (self.git_dir / "CHERRY_PICK_HEAD").exists() or (self.git_dir / "sequencer").exists()

    def _clean_tree(self, onto: str | None = None) -> None:
        """Leave no cherry-pick in progress and a work tree equal to HEAD (or onto)."""
        if self._cherry_pick_state():
            proc = self._git(["cherry-pick", "--abort"], check=False, what="aborting a cherry-pick")
            if proc.returncode != 0 or self._cherry_pick_state():
                self._git(["cherry-pick", "--quit"], check=False, what="clearing a cherry-pick")
        if onto is None:
            self._git(["reset", "--quiet", "--hard"], what="resetting the clone")
        else:
            self._git(
                ["checkout", "--quiet", "--force", "--detach", onto, "--"],
                what="checking out the base commit",
            )
        self._git(["clean", "-ffdxq"], what="cleaning the clone")

    def cherry_pick(
        self,
        onto_sha: str,
        commits: Sequence[str],
        *,
        committer_name: str | None = None,
        committer_email: str | None = None,
    ) -> str:
        """Cherry-pick commits (-x, in order) onto onto_sha in the work tree; return the new head."""
        onto = require_sha(onto_sha, "base commit")
        picks = [require_sha(c) for c in commits]
        env: dict[str, str] = {}
        if committer_name is not None:
            env["GIT_COMMITTER_NAME"] = check_ident(committer_name, "committer name")
        if committer_email is not None:
            env["GIT_COMMITTER_EMAIL"] = check_ident(committer_email, "committer email")
        self._clean_tree(onto)
        if not picks:
            return onto
        proc = self._git(
            ["cherry-pick", "-x", "--allow-empty-message", "--end-of-options", *picks],
            env=env,
            check=False,
            what="cherry-picking",
        )
        if proc.returncode != 0:
            self._raise_cherry_pick_failure(proc)
        head = self._git(["rev-parse", "--verify", "HEAD"], what="reading the new head")
        return decode(head.stdout).strip()

    def _raise_cherry_pick_failure(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        pick_head = self.git_dir / "CHERRY_PICK_HEAD"
        commit = pick_head.read_text().strip() if pick_head.exists() else ""
        unmerged = self._git(
            ["diff", "--name-only", "--diff-filter=U", "-z"], check=False, what="listing conflicts"
        )
        files = tuple(sorted({decode(f) for f in unmerged.stdout.split(b"\x00") if f}))
        stderr = proc.stderr
        try:
            self._clean_tree()
        finally:
            if files:
                raise CherryPickConflict(
                    f"Cherry-picking {commit[:12] or 'a commit'} conflicts in "
                    f"{', '.join(files)}; nothing was changed. Merge that fix to the release "
                    "branch by hand, or pick the commits it depends on first.",
                    commit=commit,
                    files=files,
                )
            if commit and b"empty" in stderr:
                raise CherryPickEmpty(
                    f"Commit {commit[:12]} changes nothing on this line: its change is already "
                    "there. Leave it out of the hotfix.",
                    commit=commit,
                )
            raise GitError(failure_message("cherry-picking", stderr, self._secrets))

    def push_branch_ff(self, branch: str, new_sha: str, expected_old: str) -> None:
        """Push new_sha to branch on origin, fast-forward only (never forced)."""
        check_ref_syntax(branch, "branch")
        new = require_sha(new_sha)
        old = require_sha(expected_old, "expected old commit")
        branch = validate_ref_name(branch, kind="branch")
        if not self.is_ancestor(old, new):
            raise PushRejected(
                f"{new[:12]} does not build on {old[:12]}, so {branch} cannot be fast-forwarded.",
                ref=f"refs/heads/{branch}",
                reason="not a fast-forward",
            )
        self.push([f"{new}:refs/heads/{branch}"])

    def tag_graph(self, tagged: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """The history between tags, from one decoration-simplified `git log`: every commit a
        tag points at (and each merge that joins their lines) mapped to its nearest such
        ancestors, so ancestry among tags is a walk over this small graph instead of a git call
        per tag.

        `tagged`: the tag commits the caller will look up. Git's walk leaves out a tagged root
        commit whose tree is empty (it counts as unchanged); each of those, rare, costs one
        more call, which names the tags that contain it.
        """
        wanted = {require_sha(s) for s in tagged}
        if not wanted:
            return {}
        # --simplify-by-decoration rewrites parents and drops merges that join nothing new, so
        # the output is about one line per tagged commit, in one process, even on 100k commits.
        proc = self._git(
            [
                "log",
                "--simplify-by-decoration",
                "--decorate-refs=refs/tags/",
                "--topo-order",
                "--format=%H %P",
                "--tags",
                "--",
            ],
            what="reading the history between tags",
        )
        graph: dict[str, tuple[str, ...]] = {}
        for line in decode(proc.stdout).splitlines():
            sha, *parents = line.split()
            if is_sha(sha) and all(is_sha(p) for p in parents):
                graph[sha] = tuple(parents)
        for root in sorted(wanted - graph.keys()):
            proc = self._git(
                [
                    "for-each-ref",
                    f"--contains={root}",
                    "--format=%(objectname) %(*objectname)",
                    "refs/tags",
                ],
                what="finding the tags that contain a root commit",
            )
            graph[root] = ()
            for line in decode(proc.stdout).splitlines():
                obj, _, peeled = line.partition(" ")
                commit = peeled or obj
                if commit != root and commit in graph:
                    graph[commit] = (*graph[commit], root)
        return graph


def _credentials(url: str, env_name: str | None) -> tuple[tuple[str, str] | None, str]:
    """(user, password) for the remote, from the named environment variable or else the URL;
    with the sentence to raise when a remote call needs them and they cannot be had."""
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            return None, (
                f"The environment variable {env_name} named by the project's "
                "remote_credentials_env is not set (or empty) in this relapp process; set it "
                "to user:token."
            )
        user, sep, password = value.partition(":")
        return ((user, password) if sep else ("", value)), ""
    return url_credentials(url), ""


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0
