"""Password hashing parameters come from configuration: OWASP's argon2id minimum in production,
the cheapest ones in this test suite."""

from __future__ import annotations

import pytest
from argon2 import extract_parameters

from config import Config
from relapp.security import Passwords


def test_the_default_configuration_hashes_with_owasps_argon2id_minimum() -> None:
    settings = Config({})
    passwords = Passwords(memory_kib=settings.RELAPP_ARGON2_MEMORY_KIB,
                          time_cost=settings.RELAPP_ARGON2_TIME_COST,
                          parallelism=settings.RELAPP_ARGON2_PARALLELISM)
    hashed = passwords.hash("correct horse battery staple")
    assert hashed.startswith("$argon2id$")
    params = extract_parameters(hashed)
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19 * 1024, 2, 1)
    assert passwords.verify(hashed, "correct horse battery staple")
    assert not passwords.verify(hashed, "wrong")
    assert not passwords.verify(None, "anything")


def test_the_app_uses_the_configured_parameters_and_flags_old_hashes(app_ctx) -> None:
    from relapp.extensions import get_passwords

    passwords = get_passwords()
    hashed = passwords.hash("pw")
    params = extract_parameters(hashed)
    assert (params.memory_cost, params.time_cost, params.parallelism) == (
        app_ctx.config["RELAPP_ARGON2_MEMORY_KIB"], app_ctx.config["RELAPP_ARGON2_TIME_COST"],
        app_ctx.config["RELAPP_ARGON2_PARALLELISM"])
    stronger = Passwords(memory_kib=64 * 1024, time_cost=3, parallelism=4).hash("pw")
    assert passwords.needs_rehash(stronger)
    assert passwords.verify(stronger, "pw")  # old hashes keep working
    assert not passwords.needs_rehash(hashed)


def test_production_mode_is_defined_once() -> None:
    assert Config({}).RELAPP_ENV == "development" and not Config({}).RELAPP_PRODUCTION
    assert Config({"RELAPP_ENV": "production"}).RELAPP_PRODUCTION
    with pytest.raises(ValueError, match="RELAPP_ENV must be one of development, production"):
        Config({"RELAPP_ENV": "staging"})


def test_a_hash_made_with_other_parameters_is_renewed_at_sign_in(app_ctx) -> None:
    from relapp.extensions import db
    from relapp.services.accounts import authenticate, create_user

    user = create_user("olga", "an old password", "viewer")
    user.password_hash = Passwords(memory_kib=16, time_cost=2, parallelism=2).hash("an old password")
    db.session.commit()
    assert authenticate("olga", "wrong") is None
    assert extract_parameters(user.password_hash).memory_cost == 16  # a failed sign-in changes nothing
    assert authenticate("olga", "an old password") is not None
    db.session.expire_all()
    renewed = extract_parameters(user.password_hash)
    assert (renewed.memory_cost, renewed.time_cost, renewed.parallelism) == (
        app_ctx.config["RELAPP_ARGON2_MEMORY_KIB"], app_ctx.config["RELAPP_ARGON2_TIME_COST"],
        app_ctx.config["RELAPP_ARGON2_PARALLELISM"])
    assert authenticate("olga", "an old password") is not None
