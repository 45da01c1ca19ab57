"""The tenant's usage page: ``tokens`` (signed, expiring links), ``view`` (the data it shows), ``page``
(its HTML)."""
