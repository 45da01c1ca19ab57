"""Fixtures shared by the webhook and dunning tests (see tests/dunning/support.py)."""
from tests.dunning.support import gateway, handlers, stripe  # noqa: F401
