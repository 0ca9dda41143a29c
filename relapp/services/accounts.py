"""Users and API tokens."""

from __future__ import annotations

from sqlalchemy import select

from ..exceptions import NotFound, ServiceError
from ..extensions import db, get_passwords
from ..models import ROLES, ApiToken, User
from ..security import new_token, token_hash
from . import audit


def create_user(username: str, password: str, role: str, *, display_name: str = "",
                is_demo: bool = False, actor: User | str | None = "cli") -> User:
    """Create a user with a hashed password."""
    username = username.strip()
    if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ServiceError("A username is 1-64 letters, digits, '.', '-' or '_'.")
    if role not in ROLES:
        raise ServiceError(f"Unknown role '{role}'; roles are {', '.join(ROLES)}.")
    if len(password) < 4:
        raise ServiceError("A password needs at least 4 characters.")
    if db.session.scalar(select(User).where(User.username == username)):
        raise ServiceError(f"A user named '{username}' already exists.", status=409)
    user = User(username=username, password_hash=get_passwords().hash(password), role=role,
                display_name=display_name, is_demo=is_demo)
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "user.create", target=f"user:{username}", after={"role": role})
    db.session.commit()
    return user


def create_token(username: str, name: str = "", *, actor: User | str | None = "cli") -> tuple[ApiToken, str]:
    """Make an API token for a user; the token is returned once and only its hash is kept."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"There is no user named '{username}'.")
    token = new_token()
    row = ApiToken(user_id=user.id, name=name[:120], token_hash=token_hash(token), prefix=token[:8])
    db.session.add(row)
    audit.record(actor, "token.create", target=f"user:{username}", after={"name": row.name, "prefix": row.prefix})
    db.session.commit()
    return row, token


def revoke_token(user: User, token_id: int) -> ApiToken:
    """Revoke one of the user's API tokens (an admin may revoke anyone's); audited, idempotent."""
    from ..models import utcnow

    row = db.session.get(ApiToken, token_id)
    if row is None or (row.user_id != user.id and user.role != "admin"):
        raise NotFound(f"You have no API token {token_id}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(user, "token.revoke", target=f"user:{row.user.username}",
                     before={"name": row.name, "prefix": row.prefix, "revoked": False},
                     after={"name": row.name, "prefix": row.prefix, "revoked": True})
        db.session.commit()
    return row
