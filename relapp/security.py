"""Password hashing (argon2id, with parameters from the configuration) and API tokens (random,
only their SHA-256 stored).

A password check is bounded twice. Its cost: OWASP's argon2id parameters by default (19 MiB, 2
iterations, 1 lane; config.py). Its concurrency: at most RELAPP_PASSWORD_CHECKS checks run at
once per process (4 by default), the others wait their turn, so a burst of sign-ins holds at most
that many × 19 MiB and cannot starve the process of CPU. Under gevent (gunicorn's gevent worker)
an argon2 call would hold the hub for its whole duration, stopping every other request and live
stream of the worker; in a monkey-patched process the check runs in gevent's native threadpool
(argon2 releases the GIL), and the greenlet waits cooperatively.
"""

from __future__ import annotations

import hashlib
import secrets
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "rla_"
T = TypeVar("T")


def _gevent_patched() -> bool:
    """True in a process gevent monkey-patched (never imports gevent otherwise)."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


class Passwords:
    """Hashes and checks passwords with one set of argon2id parameters, at most `concurrency`
    checks at a time in this process.

    `in_flight` and `peak` count the checks running now and the most that ever ran at once (read
    by the tests and the bench). Made at first use (extensions.get_passwords), after gevent's
    patching: its semaphore is then gevent's, and waiting for a turn yields to other greenlets.
    """

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int, concurrency: int = 4) -> None:
        self._hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost,
                                      parallelism=parallelism, type=Type.ID)
        self.concurrency = max(1, int(concurrency))
        self._turns = threading.BoundedSemaphore(self.concurrency)
        self._count = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        # Verified against for unknown users, so timing does not tell which usernames exist
        # (made at the first check that needs it, within the bound).
        self._dummy: str | None = None

    def _bounded(self, work: Callable[..., T], *args: Any) -> T:
        """Run one argon2 call within the bound: in gevent's threadpool when patched."""
        with self._turns:
            with self._count:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            try:
                if _gevent_patched():
                    import gevent  # type: ignore[import-untyped]

                    pool = gevent.get_hub().threadpool
                    pool.maxsize = max(pool.maxsize, self.concurrency)
                    return pool.apply(work, args)  # type: ignore[no-any-return]
                return work(*args)
            finally:
                with self._count:
                    self.in_flight -= 1

    def hash(self, password: str) -> str:
        """An argon2id hash of the password."""
        return self._bounded(self._hasher.hash, password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when the password matches; spends the same effort when there is no user."""
        if password_hash is None and self._dummy is None:
            self._dummy = self.hash("relapp-no-such-user")
        try:
            return bool(self._bounded(self._hasher.verify, password_hash or self._dummy, password)) \
                and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones (read from
        the hash's own text: no argon2 work)."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


def new_token() -> str:
    """A new API token: a fixed prefix (so leaks are easy to grep for) and 32 random bytes."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
