"""Pieces of the load suite (bench/load.py): the stack it starts, the seed it runs inside the app,
and the traffic it sends."""
