"""Use cases: one function, one transaction; work is enqueued only after the commit.

One module per area (accounts, projects, releases, deployments, ...) rather than one services.py:
each is a room with one purpose.
"""
