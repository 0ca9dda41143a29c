"""Running the git binary: argv lists, a scrubbed environment, timeouts and process groups."""

# Every git process starts in `_spawn`, which uses an argv list (never a shell), a scrubbed
# environment that cannot prompt, its own session so a timeout kills the whole process group,
# and masks credentials in anything it reports. `run` waits for the output, `run_streaming`
# hands it over as it arrives.

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from .errors import GitError
from .masking import mask

DEFAULT_TIMEOUT = 120.0

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
    # Configuration and credentials are given per process (see `credential_env`), never inherited.
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "RELAPP_GIT_USERNAME",
    "RELAPP_GIT_PASSWORD",
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


# The credential helper of a git process that talks to a remote needing credentials: a shell
# function (git runs `!…` helpers through sh) that answers `get` from two variables set for that
# process alone. The credentials are never in argv (visible to everyone in /proc) nor in a file;
# the empty helper before it drops any configured helper, so none can store them either.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; '
    'printf "username=%s\\npassword=%s\\n" "$RELAPP_GIT_USERNAME" "$RELAPP_GIT_PASSWORD"; }; f'
)
TOKEN_USERNAME = "x-access-token"
"""The user name sent with a credential that is a token alone (git hosts accept any name)."""


def credential_env(username: str, password: str) -> dict[str, str]:
    """Environment for one git process: git asks the helper above, which answers from it."""
    if any(ch in value for value in (username, password) for ch in "\n\r\0"):
        raise GitError("The remote credentials contain a line break, which git cannot take.")
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": "credential.helper",
        "GIT_CONFIG_VALUE_1": _CREDENTIAL_HELPER,
        "RELAPP_GIT_USERNAME": username or TOKEN_USERNAME,
        "RELAPP_GIT_PASSWORD": password,
    }


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
    what: str,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start one git process: counted, hooked, scrubbed, in its own session (for both runners).

    Return it with its label, the name the runner's errors give it.
    """
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
    label = _label(args, what)
    try:
        proc = subprocess.Popen(
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
    return proc, label


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


def run(
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
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    proc, label = _spawn(
        args, git_dir=git_dir, work_tree=work_tree, env=env, stdin=stdin, what=what
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _timed_out(proc, label, timeout) from None
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise GitError(failure_message(label, err, secrets))
    return result


# Bytes per read of a streamed stdout: a whole pipe buffer, so each wake-up drains it.
_STREAM_READ = 1 << 16


def run_streaming(
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
    """Run one git process like `run` (check=True), handing stdout to on_stdout as it arrives.

    The caller works on the output while git is still producing it. The timeout covers the
    whole run, as in `run`; if on_stdout raises, git is killed and the exception propagates.
    """
    proc, label = _spawn(
        args, git_dir=git_dir, work_tree=work_tree, env=env, stdin=subprocess.DEVNULL, what=what
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
        raise GitError(failure_message(label, b"".join(err_parts), secrets))


# What git says when a remote wants credentials it was not given, or refused the ones it got.
_NO_CREDENTIALS = ("could not read username", "could not read password", "terminal prompts disabled")
_BAD_CREDENTIALS = ("authentication failed", "access denied", "returned error: 401",
                    "returned error: 403", "invalid username or password")


def failure_message(label: str, stderr: bytes, secrets: Iterable[str]) -> str:
    """A one-paragraph sentence from git's stderr: the fatal/error lines, masked."""
    text = stderr.decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    important = [ln for ln in lines if ln.lower().startswith(("fatal:", "error:"))] or lines[-3:]
    detail = " ".join(important)[:600] or "no message"
    lowered = text.lower()
    if any(s in lowered for s in _NO_CREDENTIALS):
        detail = (
            "the remote asks for credentials and none were given; set the project's "
            "remote_credentials_env to the name of an environment variable holding user:token "
            f"({detail})"
        )
    elif any(s in lowered for s in _BAD_CREDENTIALS):
        detail = (
            "the remote refused the credentials it was given; check the token in the environment "
            f"variable named by the project's remote_credentials_env ({detail})"
        )
    return mask(f"{label} failed: {detail}", secrets)


def decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")
