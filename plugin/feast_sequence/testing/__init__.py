"""Helpers for tests and the demo: a private redis-server on a free port. Not used at run time."""
