"""Password hashing (argon2id, with parameters from the configuration) and API tokens (random,
only their SHA-256 stored)."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "rla_"


class Passwords:
    """Hashes and checks passwords with one set of argon2id parameters."""

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost,
                                      parallelism=parallelism, type=Type.ID)
        # Verified against for unknown users, so timing does not tell which usernames exist.
        self._dummy = self._hasher.hash("relapp-no-such-user")

    def hash(self, password: str) -> str:
        """An argon2id hash of the password."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when the password matches; spends the same effort when there is no user."""
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
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
