"""Pure release rules: no Flask, SQLAlchemy, Redis, subprocess or git in here."""
