"""Run inside relapp's environment (the bench's DATABASE_URL, REDIS_URL, RELAPP_INSTANCE ...) by
bench/load.py: sync the projects' TOML (production mode only), adopt their tags, create the load
users through the account service and an admin's API token. Prints one JSON object on stdout.

    python bench/loadlib/seed.py --users 50 --password PW [--config FILE] [--projects a,b]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sqlalchemy import select


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--projects", default="")
    args = parser.parse_args(argv)

    from relapp import create_app
    from relapp.extensions import db
    from relapp.models import Project, User
    from relapp.services import adoption
    from relapp.services.accounts import create_token, create_user

    app = create_app()
    with app.app_context():
        keys = [k for k in args.projects.split(",") if k]
        if args.config is not None:
            from relapp.services.projects import load_settings, sync_settings

            sync_settings(load_settings(args.config), actor="cli")
            for key in keys:
                adoption.adopt_into_db(key, actor="cli")
        # The roles of a team: most people look, some ship.
        roles = ("viewer", "engineer", "qa", "release")
        users = []
        for n in range(1, args.users + 1):
            name = f"load{n:03d}"
            if db.session.scalar(select(User).where(User.username == name)) is None:
                create_user(name, args.password, roles[n % len(roles)], display_name=f"Load {n}", actor="cli")
            users.append(name)
        if db.session.scalar(select(User).where(User.username == "loadbot")) is None:
            create_user("loadbot", args.password, "admin", display_name="Load bot", actor="cli")
        _row, token = create_token("loadbot", "load bench")
        projects = {p.key: p.id for p in db.session.scalars(select(Project))}
        db.session.remove()
    json.dump({"users": users, "token": token, "projects": projects}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
