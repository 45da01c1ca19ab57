"""What every context speaks: ``money`` (Decimal and the one rounding rule), ``periods`` (billing
periods and instants), ``errors`` (typed errors carrying their HTTP status), ``validation`` (request
bodies, identifiers, pydantic errors as ``details``). Imports nothing else of the package."""
