"""The only module of relapp that runs git: validated names in, full SHAs and plain records out.

Every git process goes through `_run`, which uses an argv list (never a shell), a
scrubbed environment that cannot prompt, a timeout that kills the whole process
group, and masks credentials in anything it reports. Reads are one plumbing call
each; nothing here walks history object by object.

We call the git binary directly rather than through GitPython's keyword-to-option
translation, because that translation is where GitPython's option-injection
advisories keep coming from; every argument here is spelled out and validated.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets as _secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from relapp.domain.gitdata import RawCommit, TagRef

log = logging.getLogger(__name__)

__all__ = [
    "CherryPickConflict",
    "CherryPickEmpty",
    "FetchResult",
    "GitError",
    "PushRejected",
    "TagConflict",
    "UnsafeName",
    "Workspace",
    "WorkspaceBusy",
    "clone_to",
    "fast_import",
    "git_call_count",
    "init_bare",
    "is_sha",
    "mask",
    "on_git_call",
    "redact_url",
    "validate_ref_name",
    "validate_remote_url",
    "validate_revision",
]

DEFAULT_TIMEOUT = 120.0
MAX_REF_LEN = 100


# --------------------------------------------------------------------------- errors


class GitError(Exception):
    """A git operation failed; the message is a sentence a person can act on, credentials masked."""


class UnsafeName(GitError):
    """A name, revision, refspec or URL was refused before git saw it."""


class WorkspaceBusy(GitError):
    """Another process holds the clone's lock."""


class PushRejected(GitError):
    """The remote refused (or did not confirm) one of the pushed refs."""

    def __init__(self, message: str, *, ref: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.ref = ref
        self.reason = reason


class TagConflict(GitError):
    """The tag already exists at another commit (locally or on the remote)."""

    def __init__(self, message: str, *, tag: str = "", existing_sha: str = "") -> None:
        super().__init__(message)
        self.tag = tag
        self.existing_sha = existing_sha


class CherryPickConflict(GitError):
    """A cherry-pick stopped on conflicts; the clone was reset and `files` names the conflicts."""

    def __init__(self, message: str, *, commit: str = "", files: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.commit = commit
        self.files = files


class CherryPickEmpty(GitError):
    """A cherry-picked commit changed nothing: its change is already on the line."""

    def __init__(self, message: str, *, commit: str = "") -> None:
        super().__init__(message)
        self.commit = commit


# --------------------------------------------------------------------------- masking

# userinfo in scheme://user:pass@host/… (also a bare token as user); git itself prints URLs.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """Return text with URL credentials and each given secret replaced by `***`."""
    # Longest first so a secret containing another is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + "***@", text)


def redact_url(url: str) -> str:
    """Return a remote URL fit for a page or a log: credentials removed."""
    return mask(url)


def _url_secrets(url: str) -> list[str]:
    """Credentials embedded in a URL, so they can be masked even where git prints them decoded."""
    m = _URL_CREDENTIALS.search(url)
    if not m:
        return []
    userinfo = m.group("userinfo")
    parts = [userinfo, *userinfo.split(":", 1)]
    return [p for p in parts if len(p) >= 3]


# --------------------------------------------------------------------------- validation

_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_SHA_RE = re.compile(r"[0-9a-fA-F]{4,40}")
_FULL_SHA_RE = re.compile(r"[0-9a-f]{40}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def is_sha(text: str) -> bool:
    """True when text is a full, lower-case 40-hex object name."""
    return isinstance(text, str) and _FULL_SHA_RE.fullmatch(text) is not None


def _show(text: object) -> str:
    """A short, printable rendering of a rejected value for an error sentence."""
    r = repr(text)
    return r if len(r) <= 60 else r[:57] + "…'"


def _check_ref_syntax(name: str, what: str) -> None:
    """The pure part of ref-name validation: the allowlist and the rules it does not cover."""
    if not isinstance(name, str) or not name:
        raise UnsafeName(f"The {what} name is empty; give a name such as v1.2.0.")
    if len(name) > MAX_REF_LEN:
        raise UnsafeName(
            f"The {what} name is {len(name)} characters long; use at most {MAX_REF_LEN}."
        )
    if _CONTROL_RE.search(name) or " " in name:
        raise UnsafeName(f"The {what} name {_show(name)} contains spaces or control characters.")
    if "@{" in name or ".." in name:
        raise UnsafeName(f"The {what} name {_show(name)} contains '..' or '@{{'; remove them.")
    if _REF_RE.fullmatch(name) is None:
        raise UnsafeName(
            f"The {what} name {_show(name)} is not allowed: use letters, digits, '.', '_', '-' "
            "and '/', with each part starting with a letter or digit."
        )
    for part in name.split("/"):
        if part.endswith((".lock", ".")):
            raise UnsafeName(
                f"The {what} name {_show(name)} has a part ending in '.lock' or '.'; rename it."
            )
    if name == "HEAD" or _FULL_SHA_RE.fullmatch(name.lower()):
        # A ref that looks like HEAD or a full SHA makes every later revision ambiguous.
        raise UnsafeName(f"The {what} name {_show(name)} would be mistaken for a revision.")


def validate_ref_name(name: str, *, kind: str = "tag") -> str:
    """Return name if it is a safe tag or branch name (allowlist, then `git check-ref-format`)."""
    if kind not in ("tag", "branch"):
        raise ValueError(f"kind must be 'tag' or 'branch', not {kind!r}")
    _check_ref_syntax(name, kind)
    # Second opinion from git itself, on a string the allowlist already accepted.
    full = ("refs/tags/" if kind == "tag" else "refs/heads/") + name
    proc = _run(["check-ref-format", full], check=False, timeout=30)
    if proc.returncode != 0:
        raise UnsafeName(f"git does not accept {_show(name)} as a {kind} name; choose another.")
    return name


def validate_revision(text: str) -> str:
    """Return text if a user may give it as a revision: a 4–40 hex SHA or a safe ref name."""
    if isinstance(text, str) and _SHA_RE.fullmatch(text):
        return text.lower()
    if isinstance(text, str) and (text == "HEAD" or text.startswith("-")):
        raise UnsafeName(f"The revision {_show(text)} is not allowed; give a SHA, tag or branch.")
    try:
        _check_ref_syntax(text, "revision")
    except UnsafeName as exc:
        raise UnsafeName(
            f"{exc} A revision must be a commit SHA (4–40 hex digits) or a tag or branch name."
        ) from None
    proc = _run(["check-ref-format", "refs/heads/" + text], check=False, timeout=30)
    if proc.returncode != 0:
        raise UnsafeName(f"git does not accept {_show(text)} as a revision; give a SHA or a tag.")
    return text


_SCP_RE = re.compile(r"(?:[A-Za-z0-9._~+-]+@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!//)[^\s]+")
_URL_RE = re.compile(r"(?P<scheme>https?|ssh|git|file)://(?P<rest>.*)", re.IGNORECASE)


def validate_remote_url(url: str) -> str:
    """Return url if it is a remote git may be pointed at: no transports, options or controls."""
    bad = f"The remote URL {_show(mask(url)) if isinstance(url, str) else _show(url)}"
    if not isinstance(url, str) or not url:
        raise UnsafeName("The remote URL is empty; give an https://, ssh:// or local path.")
    if len(url) > 2000:
        raise UnsafeName("The remote URL is too long.")
    if _CONTROL_RE.search(url):
        raise UnsafeName(f"{bad} contains control characters.")
    if url.startswith("-"):
        raise UnsafeName(f"{bad} starts with '-', which git would read as an option.")
    if "::" in url:
        # <transport>::<address> runs helpers such as ext::, which execute commands.
        raise UnsafeName(f"{bad} uses a '::' transport, which is not allowed.")
    if url.startswith("/"):
        return url
    m = _URL_RE.fullmatch(url)
    if m:
        rest = m.group("rest")
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        if m.group("scheme").lower() != "file" and (not host or host.startswith("-")):
            raise UnsafeName(f"{bad} has no usable host.")
        if " " in url:
            raise UnsafeName(f"{bad} contains spaces.")
        return url
    if _SCP_RE.fullmatch(url):
        return url
    raise UnsafeName(
        f"{bad} is not an absolute path, file://, https://, ssh:// or git@host:path address."
    )


def _require_sha(value: object, what: str = "commit") -> str:
    """Internal methods take full SHAs only: anything else was not resolved first."""
    if isinstance(value, str) and is_sha(value):
        return value
    raise UnsafeName(
        f"The {what} {_show(value)} is not a full 40-hex SHA; resolve the revision first."
    )


_REFSPEC_SIDE = r"refs/(?:tags|heads)/" + _REF_RE.pattern


def _check_refspec(spec: object) -> tuple[str, str]:
    """A push refspec: `<sha or full ref>:<full ref>`, never forced, never a deletion."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise UnsafeName(f"The refspec {_show(spec)} must be '<sha or ref>:refs/...'.")
    src, dst = spec.split(":")
    if not (is_sha(src) or re.fullmatch(_REFSPEC_SIDE, src)) or not re.fullmatch(
        _REFSPEC_SIDE, dst
    ):
        raise UnsafeName(f"The refspec {_show(spec)} must be '<sha or ref>:refs/tags|heads/...'.")
    for side in (src, dst):
        if not is_sha(side):
            _check_ref_syntax(side.split("/", 2)[2], "ref")
    return src, dst


def _check_ident(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or _CONTROL_RE.search(value):
        raise UnsafeName(f"The {what} {_show(value)} is empty or contains control characters.")
    if "<" in value or ">" in value:
        raise UnsafeName(f"The {what} {_show(value)} may not contain '<' or '>'.")
    return value.strip()


# --------------------------------------------------------------------------- running git

_calls = 0
_calls_lock = threading.Lock()
on_git_call: list[Callable[[tuple[str, ...]], None]] = []
"""Callables run with the argv (after `git`) before every git process; tests count calls here."""


def git_call_count() -> int:
    """How many git processes this module has started in this process."""
    return _calls


# Variables that would point git at another repository or identity than the one we chose.
_SCRUB_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
    "GIT_CEILING_DIRECTORIES",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
    "GIT_EDITOR",
    "GIT_SEQUENCE_EDITOR",
    "GIT_PAGER",
    "GIT_TRACE",
    "GIT_EXTERNAL_DIFF",
)

# Applied to every call: no colours, signatures, editors, hooks or ext:: transport, whatever
# the user's or system's git config says; the output formats we parse must not change.
_CONFIG = (
    "color.ui=never",
    "core.quotePath=false",
    "core.hooksPath=/dev/null",
    "core.editor=true",
    "core.pager=cat",
    "log.showSignature=false",
    "tag.gpgSign=false",
    "commit.gpgSign=false",
    "protocol.ext.allow=never",
    "advice.detachedHead=false",
    "advice.nestedTag=false",
    "gc.auto=0",
)


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS=os.environ.get("RELAPP_GIT_ASKPASS", "/bin/false"),
        SSH_ASKPASS="/bin/false",
        LC_ALL="C",
        LANGUAGE="C",
        GIT_PAGER="cat",
        GIT_EDITOR="true",
    )
    # BatchMode: ssh fails instead of asking for a password or a host key.
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _spawn(
    args: Sequence[str],
    *,
    git_dir: Path | None,
    work_tree: Path | None,
    env: Mapping[str, str] | None,
    stdin: int,
    label: str,
) -> subprocess.Popen[bytes]:
    """Start one git process (counted, hooked, scrubbed, in its own session); `_run` and `_stream` share it."""
    global _calls
    argv: list[str] = ["git"]
    for item in _CONFIG:
        argv += ["-c", item]
    argv += list(args)
    with _calls_lock:
        _calls += 1
    for hook in tuple(on_git_call):  # a hook may unregister itself
        hook(tuple(args))
    full_env = _base_env()
    if git_dir is not None:
        full_env["GIT_DIR"] = str(git_dir)
    if work_tree is not None:
        full_env["GIT_WORK_TREE"] = str(work_tree)
    if env:
        full_env.update(env)
    # Never inherit a repository from the current directory: run where we point, or at /.
    cwd = str(work_tree if work_tree is not None else git_dir if git_dir is not None else "/")
    if git_dir is None:
        full_env["GIT_CEILING_DIRECTORIES"] = "/"
    try:
        return subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            start_new_session=True,  # so a timeout can kill ssh and helpers too
        )
    except OSError as exc:
        raise GitError(f"Could not start git for {label}: {exc.strerror}.") from None


def _label(args: Sequence[str], what: str) -> str:
    return what or f"git {args[0] if args else ''}".strip()


def _timed_out(proc: subprocess.Popen[bytes], label: str, timeout: float) -> GitError:
    """Kill the process group of a git that overran its timeout; return the error to raise."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    return GitError(
        f"{label} did not finish within {timeout:g} seconds and was stopped; "
        "check that the remote is reachable."
    )


def _run(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    secrets: Iterable[str] = (),
    what: str = "",
) -> subprocess.CompletedProcess[bytes]:
    """Run one git process to completion; every git process starts in `_spawn`."""
    hidden = list(secrets)
    label = _label(args, what)
    proc = _spawn(
        args,
        git_dir=git_dir,
        work_tree=work_tree,
        env=env,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        label=label,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _timed_out(proc, label, timeout) from None
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise GitError(_failure(label, err, hidden))
    return result


# Bytes per read of a streamed stdout: a whole pipe buffer, so each wake-up drains it.
_STREAM_READ = 1 << 16


def _stream(
    args: Sequence[str],
    on_stdout: Callable[[bytes], None],
    *,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    secrets: Iterable[str] = (),
    what: str = "",
) -> None:
    """Run one git process like `_run` (check=True), handing stdout to on_stdout as it arrives.

    The caller works on the output while git is still producing it. The timeout covers the
    whole run, as in `_run`; if on_stdout raises, git is killed and the exception propagates.
    """
    hidden = list(secrets)
    label = _label(args, what)
    proc = _spawn(
        args,
        git_dir=git_dir,
        work_tree=work_tree,
        env=env,
        stdin=subprocess.DEVNULL,
        label=label,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    err_parts: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(out_fd, selectors.EVENT_READ)
            sel.register(err_fd, selectors.EVENT_READ)
            open_fds = 2
            while open_fds:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(proc.args, timeout)
                for key, _ in sel.select(remaining):
                    data = os.read(key.fd, _STREAM_READ)
                    if not data:
                        sel.unregister(key.fd)
                        open_fds -= 1
                    elif key.fd == out_fd:
                        on_stdout(data)
                    else:
                        err_parts.append(data)
        proc.wait(max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        raise _timed_out(proc, label, timeout) from None
    except BaseException:
        # The caller's parser failed (or we were interrupted): git must not outlive us.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    if proc.returncode != 0:
        raise GitError(_failure(label, b"".join(err_parts), hidden))


def _failure(label: str, stderr: bytes, secrets: Iterable[str]) -> str:
    """A one-paragraph sentence from git's stderr: the fatal/error lines, masked."""
    text = stderr.decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    important = [ln for ln in lines if ln.lower().startswith(("fatal:", "error:"))] or lines[-3:]
    detail = " ".join(important)[:600] or "no message"
    return mask(f"{label} failed: {detail}", secrets)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class _LogRecords:
    """Turns the output of `Workspace._log`'s format into RawCommits, fed in chunks as they arrive.

    Each record starts with the start marker NUL NUL "S<token>" NUL (the first record lacks the
    leading NUL, which `-z` puts between records), holds sha, parents, name, email, date and
    message separated by NULs, then the end marker NUL "E<token>" and the NUL-separated files.
    A record is complete once the next start marker has arrived (or the output has ended), so
    each chunk is cut just before the last start marker it holds: the bytes before the cut are
    whole records, the rest waits for more. The cut is at an ASCII NUL, which always decodes to
    itself and ends any broken UTF-8 sequence before it, so decoding and splitting piece by
    piece gives exactly what decoding and splitting the whole output at once would.
    """

    __slots__ = (
        "_end_text",
        "_error",
        "_on_commit",
        "_pending",
        "_start",
        "_start_text",
        "commits",
    )

    def __init__(self, token: str, on_commit: Callable[[RawCommit], None] | None = None) -> None:
        # on_commit sees each record as soon as it is complete, while git is still writing.
        self._on_commit = on_commit
        self._start_text = f"\x00\x00S{token}\x00"
        self._end_text = f"\x00E{token}"
        self._start = self._start_text.encode()
        # The first record lacks the separator NUL: with it, every record starts with the marker.
        self._pending = b"\x00"
        self._error: GitError | None = None
        self.commits: list[RawCommit] = []

    def feed(self, data: bytes) -> None:
        """Take the next chunk of git's stdout; parse every record it completes."""
        buf = self._pending + data
        cut = buf.rfind(self._start)
        if cut <= 0:  # no record ends in this buffer yet
            self._pending = buf
            return
        self._pending = buf[cut:]
        if self._error is None:
            self._parse(buf[:cut])

    def close(self) -> list[RawCommit]:
        """Parse what is left once git has exited successfully; return every commit in order."""
        if self._error is None:
            self._parse(self._pending)
        self._pending = b""
        if self._error is not None:
            raise self._error
        return self.commits

    def _parse(self, data: bytes) -> None:
        # A malformed record is reported only after git's own exit status, as a whole-output
        # parse would: git's failure message is the better one when both happen.
        text = data.decode("utf-8", "replace")
        end_text = self._end_text
        append = self.commits.append
        on_commit = self._on_commit
        for chunk in text.split(self._start_text)[1:]:
            head, sep, tail = chunk.partition(end_text)
            if not sep:
                self._error = GitError("git log output could not be read (record marker missing).")
                return
            fields = head.split("\x00", 5)
            if len(fields) != 6:
                self._error = GitError("git log output could not be read (fields missing).")
                return
            sha, parent_text, name, email, date, message = fields
            parents = tuple(parent_text.split())
            files: tuple[str, ...] = ()  # merges carry no file list
            if len(parents) <= 1:
                rest = tail.lstrip("\x00").removeprefix("\n")
                if rest:
                    files = tuple(rest.split("\x00"))
                    if "" in files:  # trailing or doubled NULs; a path is never empty
                        files = tuple([f for f in files if f])
            try:
                authored = int(date)  # int() ignores surrounding whitespace, as _int does
            except ValueError:
                authored = 0
            commit = RawCommit(sha, parents, name, email, authored, message, files)
            append(commit)
            if on_commit is not None:
                on_commit(commit)


# --------------------------------------------------------------------------- small helpers


def init_bare(path: Path) -> Path:
    """Create an empty bare repository at path (initial branch main)."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(["init", "--quiet", "--bare", "--initial-branch=main", "--", str(path)])
    return path


def fast_import(repo_path: Path, stream: bytes, *, timeout: float = 600) -> None:
    """Feed a `git fast-import` stream into the repository at repo_path (bare or not)."""
    repo_path = Path(repo_path).absolute()
    git_dir = repo_path / ".git" if (repo_path / ".git").is_dir() else repo_path
    _run(["fast-import", "--quiet"], git_dir=git_dir, input=stream, timeout=timeout)


def clone_to(
    path: Path,
    remote: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> Path:
    """Clone remote (validated) into path with a work tree and a local relapp identity."""
    remote = validate_remote_url(remote)
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(
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
        secrets=[*_url_secrets(remote), *secrets],
        what="cloning the project's remote",
    )
    return path


# --------------------------------------------------------------------------- workspace


@dataclass(frozen=True)
class FetchResult:
    """What a fetch noticed: tags whose remote commit differs from ours (kept, not taken)."""

    moved_tags: tuple[str, ...] = field(default=())


_REJECT_LINE = re.compile(r"^\s*!\s*\[rejected\]\s+(\S+)\s+->\s+(\S+)\s+\((.*)\)\s*$")


class Workspace:
    """relapp's own clone of one project's remote, with a lock shared by web and worker processes."""

    def __init__(
        self,
        path: Path,
        remote_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Describe the clone at path of remote_url; `env` may carry credential settings."""
        self.path = Path(path).absolute()
        self.remote_url = validate_remote_url(remote_url)
        self.timeout = timeout
        self._env = dict(env or {})
        self._secrets = _url_secrets(self.remote_url) + [v for v in self._env.values() if v]
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
    ) -> subprocess.CompletedProcess[bytes]:
        merged = {**self._env, **(env or {})}
        return _run(
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
                ["remote", "set-url", "--", "origin", self.remote_url],
                what="updating the clone's remote",
            )
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
                self.remote_url,
                timeout=self.timeout,
                env=self._env or None,
                secrets=self._secrets,
            )
            os.rename(tmp / "c", self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def fetch(self) -> FetchResult:
        """Fetch branches and tags from origin, pruning; tags moved on the remote are reported."""
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
        )
        err = _decode(proc.stderr)
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
                _failure("fetching from the project's remote", proc.stderr, self._secrets)
            )
        if moved:
            log.warning(
                "tags moved on remote %s and were kept at their old commit: %s",
                redact_url(self.remote_url),
                ", ".join(moved),
            )
        return FetchResult(moved_tags=tuple(sorted(moved)))

    # -- reads

    def resolve(self, rev: str) -> str:
        """Resolve a user-given revision (SHA, tag or branch of origin) to a full commit SHA."""
        rev = validate_revision(rev)
        if _SHA_RE.fullmatch(rev):
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
            sha = _decode(proc.stdout).strip()
            if proc.returncode == 0 and is_sha(sha):
                return sha
        raise GitError(
            f"Unknown revision {rev!r}: no commit, tag or branch of the remote has that name. "
            "Check the spelling, or fetch if it was pushed just now."
        )

    def tags(self) -> list[TagRef]:
        """Every tag peeled to its commit, from one `git for-each-ref` (trees and blobs dropped)."""
        fields = (
            "%(refname) %(objecttype) %(objectname) %(*objecttype) %(*objectname)"
            " %(taggerdate:unix) %(creatordate:unix)"
        )
        fmt = fields.replace(" ", "%1f")
        proc = self._git(["for-each-ref", f"--format={fmt}", "refs/tags"], what="listing tags")
        out: list[TagRef] = []
        nested: list[tuple[str, bool, int]] = []
        for line in _decode(proc.stdout).splitlines():
            parts = line.split("\x1f")
            if len(parts) != 7:
                continue
            ref, otype, oid, ptype, poid, tagger_date, creator_date = parts
            name = ref.removeprefix("refs/tags/")
            created = _int(tagger_date) or _int(creator_date)
            if otype == "commit":
                out.append(TagRef(name, oid, False, created))
            elif otype == "tag" and ptype == "commit":
                out.append(TagRef(name, poid, True, created))
            elif otype == "tag" and ptype == "tag":
                nested.append((name, True, created))
            # tags of trees and blobs are not releases: dropped
        if nested:
            # A tag of a tag (rare): one more batch call peels them all the way.
            query = "".join(f"refs/tags/{n}^{{commit}}\n" for n, _, _ in nested).encode()
            proc = self._git(
                ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                input=query,
                what="peeling nested tags",
            )
            for (name, annotated, created), line in zip(
                nested, _decode(proc.stdout).splitlines(), strict=False
            ):
                sha, _, kind = line.partition(" ")
                if kind == "commit" and is_sha(sha):
                    out.append(TagRef(name, sha, annotated, created))
        out.sort(key=lambda t: t.name)
        return out

    def tags_merged(self, sha: str) -> set[str]:
        """Names of the tags whose commit is reachable from sha (one `for-each-ref --merged`)."""
        sha = _require_sha(sha)
        proc = self._git(
            ["for-each-ref", f"--merged={sha}", "--format=%(refname:lstrip=2)", "refs/tags"],
            what="listing reachable tags",
        )
        return {ln for ln in _decode(proc.stdout).splitlines() if ln}

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
        include = _require_sha(include)
        excluded = [_require_sha(x) for x in exclude]
        return self._log(["--topo-order", include, *(f"^{x}" for x in excluded)], on_commit)

    def show(self, shas: Sequence[str]) -> list[RawCommit]:
        """Exactly these commits, in the order given (one git log --no-walk)."""
        wanted = [_require_sha(x) for x in shas]
        if not wanted:
            return []
        return self._log(["--no-walk=unsorted", *wanted])

    def _log(
        self, revisions: list[str], on_commit: Callable[[RawCommit], None] | None = None
    ) -> list[RawCommit]:
        options = [r for r in revisions if r.startswith("--")]
        revs = [r for r in revisions if not r.startswith("--")]
        token = _secrets.token_hex(12)
        fmt = f"%x00S{token}%x00%H%x00%P%x00%aN%x00%aE%x00%at%x00%B%x00E{token}"
        records = _LogRecords(token, on_commit)
        merged = {**self._env}
        # One git process, streamed: complete records are decoded while git is still walking.
        _stream(
            [
                "log",
                "-z",
                *options,
                "--no-renames",
                "--name-only",
                "--no-ext-diff",
                "--no-textconv",
                f"--format={fmt}",
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
        a, d = _require_sha(ancestor), _require_sha(descendant)
        proc = self._git(
            ["merge-base", "--is-ancestor", "--end-of-options", a, d],
            check=False,
            what="checking ancestry",
        )
        if proc.returncode in (0, 1):
            return proc.returncode == 0
        raise GitError(_failure("checking ancestry", proc.stderr, self._secrets))

    def patch_ids(self, shas: Iterable[str]) -> dict[str, str]:
        """Stable patch id of each commit (merges and empty commits have none): two processes."""
        wanted = [_require_sha(s) for s in shas]
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
        for line in _decode(ids.stdout).splitlines():
            pid, _, sha = line.partition(" ")
            if is_sha(sha):
                result[sha] = pid
        return result

    def cherry(self, upstream: str, head: str) -> dict[str, bool]:
        """For commits in head but not upstream: whether an equivalent patch is in upstream."""
        up, hd = _require_sha(upstream), _require_sha(head)
        proc = self._git(
            ["cherry", "--end-of-options", up, hd], what="comparing with the upstream line"
        )
        out: dict[str, bool] = {}
        for line in _decode(proc.stdout).splitlines():
            mark, _, sha = line.partition(" ")
            if is_sha(sha) and mark in "+-":
                out[sha] = mark == "-"
        return out

    def remote_ref(self, ref: str) -> tuple[str, str] | None:
        """(object, peeled commit) of one full ref on origin, from one `git ls-remote`."""
        if not re.fullmatch(_REFSPEC_SIDE, ref):
            raise UnsafeName(f"The ref {_show(ref)} must be a full refs/tags or refs/heads name.")
        _check_ref_syntax(ref.split("/", 2)[2], "ref")
        proc = self._git(
            # The peeled pattern must be asked for too, or ls-remote leaves that line out.
            ["ls-remote", "--end-of-options", "origin", ref, ref + "^{}"],
            what="asking the remote about a ref",
        )
        obj = peeled = ""
        for line in _decode(proc.stdout).splitlines():
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
        for line in _decode(proc.stdout).splitlines():
            r, obj, peeled = (line.split("\x1f") + ["", "", ""])[:3]
            if r == ref:
                return obj, peeled or obj
        return None

    # -- writes

    def create_tag(
        self, name: str, sha: str, message: str, tagger_name: str, tagger_email: str
    ) -> str:
        """Create annotated tag name at sha as the tagger (idempotent); return `refs/tags/<name>`."""
        _check_ref_syntax(name, "tag")  # every pure check first, before git runs at all
        sha = _require_sha(sha)
        tagger_name = _check_ident(tagger_name, "tagger name")
        tagger_email = _check_ident(tagger_email, "tagger email")
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
        pairs = [_check_refspec(s) for s in refspecs]
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
        )
        results: dict[str, tuple[str, str]] = {}
        for line in _decode(proc.stdout).splitlines():
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
                reason = _failure("push", proc.stderr, self._secrets)
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
            raise GitError(_failure("pushing to the project's remote", proc.stderr, self._secrets))

    def hotfix_branch(self, branch: str, base_sha: str) -> str:
        """Ensure release branch exists on origin; return its head (created at base_sha if new)."""
        _check_ref_syntax(branch, "branch")
        base_sha = _require_sha(base_sha)
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
        onto = _require_sha(onto_sha, "base commit")
        picks = [_require_sha(c) for c in commits]
        env: dict[str, str] = {}
        if committer_name is not None:
            env["GIT_COMMITTER_NAME"] = _check_ident(committer_name, "committer name")
        if committer_email is not None:
            env["GIT_COMMITTER_EMAIL"] = _check_ident(committer_email, "committer email")
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
        return _decode(head.stdout).strip()

    def _raise_cherry_pick_failure(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        pick_head = self.git_dir / "CHERRY_PICK_HEAD"
        commit = pick_head.read_text().strip() if pick_head.exists() else ""
        unmerged = self._git(
            ["diff", "--name-only", "--diff-filter=U", "-z"], check=False, what="listing conflicts"
        )
        files = tuple(sorted({_decode(f) for f in unmerged.stdout.split(b"\x00") if f}))
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
            raise GitError(_failure("cherry-picking", stderr, self._secrets))

    def push_branch_ff(self, branch: str, new_sha: str, expected_old: str) -> None:
        """Push new_sha to branch on origin, fast-forward only (never forced)."""
        _check_ref_syntax(branch, "branch")
        new = _require_sha(new_sha)
        old = _require_sha(expected_old, "expected old commit")
        branch = validate_ref_name(branch, kind="branch")
        if not self.is_ancestor(old, new):
            raise PushRejected(
                f"{new[:12]} does not build on {old[:12]}, so {branch} cannot be fast-forwarded.",
                ref=f"refs/heads/{branch}",
                reason="not a fast-forward",
            )
        self.push([f"{new}:refs/heads/{branch}"])


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0
