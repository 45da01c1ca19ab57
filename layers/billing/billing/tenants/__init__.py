"""Who is billed: ``tenant`` (the record, its plan history and standing), ``access`` (the caller and
what it may do), ``service`` (signup, plan changes, cancellation) and ``requests`` (its HTTP bodies),
``coupons`` and ``credits`` (what a tenant holds; their statement lines are in ``rating``)."""
