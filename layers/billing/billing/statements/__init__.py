"""Statements: ``statement`` (the rated, rounded, immutable result of a period) and ``close`` (the
month-end close, previews and final statements)."""
