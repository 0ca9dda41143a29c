"""Command driver: run an argv template without a shell, stream its output, kill its whole group.

A deploy must not outlive the worker that runs it. The command's direct child gets
PR_SET_PDEATHSIG (SIGKILL) so the kernel kills it the moment the work-horse that started it dies,
and the command runs in a process group (and session) of its own, which the deploy job records
through `DeployContext.on_process`: when the worker died, the reaper stops that group with
`stop_recorded_group`, which also ends whatever the command started in the background.
"""

from __future__ import annotations

import ctypes
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from relapp.drivers.base import (
    TEMPLATE_FIELDS,
    DeployContext,
    DriverConfigError,
    DriverResult,
    Outcome,
    list_setting,
    mask,
    mask_cut_tail,
    placeholders,
    render,
    timeout_setting,
)

DEFAULT_TIMEOUT = 600.0
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL to the process group
MAX_LINE_BYTES = 4096
MAX_LINES = 20_000
MAX_BYTES = 4 * 1024 * 1024
STOP_POLL_INTERVAL = 1.0  # should_stop() may hit the database; ask about once a second
EOF_WAIT = 2.0  # how long to wait for the pipe to close once every process in the group is gone
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# The signal the command's direct child gets when the thread that started it dies. SIGKILL, not
# SIGTERM: a script that traps SIGTERM would otherwise go on deploying with nobody watching.
DEATH_SIGNAL = signal.SIGKILL
# Only these variables of the worker's own environment reach the command: the worker's
# environment holds the database URL, the app's secret key and the like, and a deploy script
# that prints its environment would stream them to every browser watching the log.
INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_table(value: Any, key: str) -> dict[str, str]:
    """Validate a NAME -> value table of environment variables."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DriverConfigError(f"Setting '{key}' must be a table of NAME = \"value\" pairs.")
    table: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise DriverConfigError(f"Setting '{key}' has an invalid variable name {name!r}.")
        if name.upper().startswith("RELAPP_"):
            raise DriverConfigError(
                f"Setting '{key}' may not set {name}: RELAPP_* variables are set by relapp."
            )
        if not isinstance(item, str):
            raise DriverConfigError(f"Setting '{key}.{name}' must be a string.")
        table[name] = item
    return table


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl(2), looked up once in the parent (the child after fork only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child die (DEATH_SIGNAL) when the thread that forks it dies.

    PR_SET_PDEATHSIG follows the parent *thread*: the driver must run the command from a thread
    that lives as long as the deploy (the work-horse's main thread does). Should the parent die
    between fork and prctl, the signal would never come: the child then finds itself adopted
    (getppid() is no longer the parent) and kills itself before exec. None where prctl is absent.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()
    sig = int(DEATH_SIGNAL)

    def preexec() -> None:
        # Runs in the child between fork and exec: only calls prepared in the parent.
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class CommandDriver:
    """Runs an argv template (no shell) in its own process group with a timeout."""

    SETTINGS = ("argv", "timeout", "cwd", "env", "secrets", "pass_env")

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        pass_env: Sequence[str] = (),
        kill_grace: float = KILL_GRACE,
        max_lines: int = MAX_LINES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        """Create a driver; prefer from_settings, which validates the template."""
        self.argv = tuple(argv)
        self.timeout = float(timeout)
        self.cwd = cwd
        self.env = dict(env or {})
        self.secret_env = dict(secrets or {})
        self.pass_env = tuple(pass_env)
        self.kill_grace = kill_grace
        self.max_lines = max_lines
        self.max_bytes = max_bytes

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> CommandDriver:
        """Build the driver from TOML settings (keys checked by build_driver), raising
        DriverConfigError naming a bad value."""
        argv = settings.get("argv")
        if (
            not isinstance(argv, list | tuple)
            or not argv
            or not all(isinstance(a, str) for a in argv)
        ):
            raise DriverConfigError(
                "Setting 'argv' of the command driver must be a non-empty list of strings, "
                'such as ["./deploy.sh", "{environment}", "{tag}"].'
            )
        if not argv[0]:
            raise DriverConfigError("Setting 'argv' must start with the program to run.")
        if placeholders(argv[0]):
            raise DriverConfigError(
                "Setting 'argv' must not use a placeholder in the program name (argv[0])."
            )
        for arg in argv:
            for name in placeholders(arg):
                if name not in TEMPLATE_FIELDS:
                    raise DriverConfigError(
                        f"Setting 'argv' uses the unknown placeholder {{{name}}}; "
                        f"known ones are {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}."
                    )
        timeout = timeout_setting(settings, DEFAULT_TIMEOUT)
        cwd = settings.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not cwd):
            raise DriverConfigError("Setting 'cwd' must be a directory path.")
        env = _env_table(settings.get("env"), "env")
        secrets = _env_table(settings.get("secrets"), "secrets")
        pass_env = list_setting(settings, "pass_env", _ENV_NAME.fullmatch, "variable names")
        return cls(argv, timeout=timeout, cwd=cwd, env=env, secrets=secrets, pass_env=pass_env)

    @property
    def secrets(self) -> list[str]:
        """Return the values that must never appear in a log line."""
        return [v for v in self.secret_env.values() if v]

    def command_line(self, ctx: DeployContext) -> list[str]:
        """Return the argv for this deploy: each argument rendered on its own, never re-split."""
        fields = ctx.fields()
        return [render(arg, fields) for arg in self.argv]

    def environment(self, ctx: DeployContext) -> dict[str, str]:
        """Return the child's environment: a few inherited names, env, secrets, RELAPP_*."""
        child = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
        child.update({name: os.environ[name] for name in self.pass_env if name in os.environ})
        child.update(self.env)
        child.update(self.secret_env)
        child.update({f"RELAPP_{key.upper()}": value for key, value in ctx.fields().items()})
        return child

    def run(
        self, ctx: DeployContext, log: Callable[[str], None], should_stop: Callable[[], bool]
    ) -> DriverResult:
        """Run the command, stream its merged output and map its end to an outcome."""
        return _Run(self, ctx, log, should_stop).execute()


class _Run:
    """One execution of a CommandDriver: the process, its output pipe and the log limits."""

    def __init__(
        self,
        driver: CommandDriver,
        ctx: DeployContext,
        log: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> None:
        self.driver = driver
        self.ctx = ctx
        self.log = log
        self.should_stop = should_stop
        self.secrets = driver.secrets
        self.partial = bytearray()
        self.skipping = False  # inside an over-long line whose start was already logged
        self.lines = 0
        self.bytes = 0
        self.capped = False
        self.dropped = 0

    def emit(self, line: str) -> None:
        """Log one of relapp's own lines, masked."""
        self.log(mask(line, self.secrets))

    def finish(self, outcome: Outcome, message: str) -> DriverResult:
        """Log the closing sentence and return it as the result."""
        self.emit(message)
        return DriverResult(outcome, mask(message, self.secrets))

    def execute(self) -> DriverResult:
        """Start the process and supervise it until it ends, times out or is stopped."""
        argv = self.driver.command_line(self.ctx)
        self.emit(f"$ {shlex.join(argv)}")
        if self.should_stop():
            return self.finish(Outcome.FAILED, "stopped")
        if self.driver.cwd is not None and not os.path.isdir(self.driver.cwd):
            return self.finish(
                Outcome.FAILED, f"The working directory {self.driver.cwd!r} does not exist."
            )
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.driver.cwd,
                env=self.driver.environment(self.ctx),
                start_new_session=True,  # its own process group, so the whole tree can be killed
                close_fds=True,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - only prctl, prepared in the parent
            )
        except OSError as exc:
            return self.finish(Outcome.FAILED, f"Could not start {argv[0]!r}: {exc.strerror}.")
        assert proc.stdout is not None
        try:
            if self.ctx.on_process is not None:
                self.ctx.on_process(proc.pid)  # start_new_session: its pid is its group's id
            return self.supervise(proc)
        finally:
            # Whatever happened (even an exception in log()), leave nothing running behind.
            self.kill_group(proc)
            proc.stdout.close()
            proc.wait()

    def supervise(self, proc: subprocess.Popen[bytes]) -> DriverResult:
        """Pump output while watching the clock, the stop flag and the process."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        started = time.monotonic()
        deadline = started + self.driver.timeout
        next_stop_check = started + STOP_POLL_INTERVAL
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            eof = False
            while proc.poll() is None:
                if not eof:
                    eof = self.pump(selector, fd, 0.2)
                else:
                    time.sleep(0.2)
                now = time.monotonic()
                if now >= deadline:
                    self.emit(
                        f"relapp: timed out after {self.driver.timeout:g} s; "
                        "stopping the process group."
                    )
                    self.kill_group(proc)
                    self.drain(selector, fd, eof)
                    return self.finish(Outcome.FAILED, f"timed out after {self.driver.timeout:g} s")
                if now >= next_stop_check:
                    next_stop_check = now + STOP_POLL_INTERVAL
                    if self.should_stop():
                        self.emit("relapp: stop requested; stopping the process group.")
                        self.kill_group(proc)
                        self.drain(selector, fd, eof)
                        return self.finish(Outcome.FAILED, "stopped")
            # The main process ended; background children it left in the group go too, so they
            # cannot outlive the deploy or hold the output pipe open.
            if _group_alive(proc.pid):
                self.kill_group(proc)
            self.drain(selector, fd, eof)
        code = proc.returncode
        if code == 0:
            return self.finish(Outcome.SUCCEEDED, "exited with 0")
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return self.finish(Outcome.FAILED, f"killed by {name}")
        return self.finish(Outcome.FAILED, f"exited with {code}")

    def pump(self, selector: selectors.BaseSelector, fd: int, wait: float) -> bool:
        """Read what is available within wait seconds; return True at end of output."""
        if not selector.select(wait):
            return False
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return False
        if not chunk:
            self.flush_partial()
            return True
        self.feed(chunk)
        return False

    def drain(self, selector: selectors.BaseSelector, fd: int, eof: bool) -> None:
        """Read the rest of the output, giving up if a process outside the group keeps it open."""
        give_up = time.monotonic() + EOF_WAIT
        while not eof and time.monotonic() < give_up:
            eof = self.pump(selector, fd, 0.1)
        if not eof:
            self.flush_partial()

    def feed(self, chunk: bytes) -> None:
        """Split output into lines, logging each complete one."""
        self.partial += chunk
        while True:
            newline = self.partial.find(b"\n")
            if newline < 0:
                break
            line = bytes(self.partial[:newline])
            del self.partial[: newline + 1]
            if self.skipping:
                self.skipping = False
                continue
            self.output_line(line)
        if len(self.partial) > MAX_LINE_BYTES and not self.skipping:
            self.output_line(bytes(self.partial))
            self.skipping = True
        if self.skipping:
            self.partial.clear()

    def flush_partial(self) -> None:
        """Log a last line that had no newline."""
        if self.partial and not self.skipping:
            self.output_line(bytes(self.partial))
        self.partial.clear()
        self.skipping = False
        if self.dropped:
            self.log(f"relapp: {self.dropped} more lines of output were not kept.")
            self.dropped = 0

    def output_line(self, raw: bytes) -> None:
        """Decode, cap, mask and log one line of the command's output."""
        if self.capped:
            self.dropped += 1
            return
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > MAX_LINE_BYTES:
            text = raw[:MAX_LINE_BYTES].decode("utf-8", errors="replace")
            text = mask_cut_tail(text, self.secrets) + " [line truncated]"
        else:
            text = mask(raw.decode("utf-8", errors="replace"), self.secrets)
        self.lines += 1
        self.bytes += len(raw)
        self.log(text)
        if self.lines >= self.driver.max_lines or self.bytes >= self.driver.max_bytes:
            self.capped = True
            self.log(
                f"relapp: output truncated after {self.lines} lines; "
                "the rest is not kept (the command keeps running)."
            )

    def kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after the grace period."""
        pgid = proc.pid  # start_new_session made the child the leader of its own group
        if not _signal_group(pgid, signal.SIGTERM):
            proc.poll()
            return
        give_up = time.monotonic() + self.driver.kill_grace
        while time.monotonic() < give_up:
            proc.poll()  # reap the leader so a dead leader does not look alive
            if not _group_alive(pgid):
                return
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        proc.poll()


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send sig to a process group; return False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Only a setuid child could cause this; nothing more we can do from here.
        return False
    return True


def _group_members(pgid: int) -> list[tuple[int, int]] | None:
    """(pid, session id) of each live (non-zombie) process in the group; None without procfs."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # the process ended meanwhile
        # "pid (comm) state ppid pgrp session ...": comm may contain anything, so split after
        # the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 4 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append((int(entry), int(fields[3])))
    return members


def _group_alive(pgid: int) -> bool:
    """Return True while a live (non-zombie) process is in the group.

    Zombies are ignored: an orphaned grandchild is reaped by init, which in a container may be
    slow or never happen, and a zombie holds no pipe and runs no code.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    members = _group_members(pgid)
    return True if members is None else bool(members)  # no procfs: trust killpg


def process_marker(deployment_id: int, project: str, environment: str) -> dict[str, str]:
    """The variables every process of a deploy's command carries (set by `environment()`):
    how the reaper recognises a recorded group as still being that deploy's."""
    return {"RELAPP_DEPLOYMENT_ID": str(deployment_id), "RELAPP_PROJECT": project,
            "RELAPP_ENVIRONMENT": environment}


def _carries(pid: int, marker: Mapping[str, str]) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            environ = set(fh.read().split(b"\0"))
    except OSError:
        return False
    return all(f"{name}={value}".encode() in environ for name, value in marker.items())


def stop_recorded_group(pgid: int, marker: Mapping[str, str], *, grace: float = KILL_GRACE) -> str:
    """Stop a deploy's process group recorded earlier (SIGTERM, SIGKILL after `grace`).

    A recorded number may since have been reused by another process group, so the group is
    signalled only when it is recognisably the deploy's: it is not this process's own group
    (nor group 0 or 1); and one of its live members is in the session the command started
    (session id == group id, start_new_session) and carries the deploy's marker variables in
    its environment (RELAPP_DEPLOYMENT_ID, RELAPP_PROJECT, RELAPP_ENVIRONMENT). Returns what
    happened: "refused", "gone", "not ours", "stopped" (SIGTERM was enough) or "killed".
    """
    if pgid <= 1 or pgid in (os.getpgrp(), os.getpid()):
        return "refused"
    members = _group_members(pgid)
    if members is None:
        return "not ours"  # without procfs nothing can be recognised: leave it alone
    if not members:
        return "gone"
    if not any(session == pgid and _carries(pid, marker) for pid, session in members):
        return "not ours"
    if not _signal_group(pgid, signal.SIGTERM):
        return "gone"
    give_up = time.monotonic() + grace
    while time.monotonic() < give_up:
        if not _group_alive(pgid):
            return "stopped"
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)
    settle = time.monotonic() + 2.0  # SIGKILL is delivered asynchronously
    while _group_alive(pgid) and time.monotonic() < settle:
        time.sleep(0.02)
    return "killed"
