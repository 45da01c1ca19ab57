"""Fixtures shared by the webhook and dunning tests (see tests/dunning/support.py)."""

from tests.dunning.support import handlers, stripe, world  # noqa: F401
