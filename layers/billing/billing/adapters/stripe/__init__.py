"""Stripe, through the official SDK; the only package that imports ``stripe``.

``gateway`` (``StripeGateway``, the one object the rest of the code uses) is composed of one class
per Stripe resource: ``customers``, ``invoices``, ``invoice_items``, ``balance_transactions``
(customer balance credits), ``products`` (the catalog) and ``sessions`` (Checkout setup and billing
portal). ``client`` holds the request they all describe and send (``StripeRequest``) and the one
request path (retries, idempotency keys, paging); ``http`` the rate limiter and the retry policy;
``webhook_signature`` signatures and the endpoint secret."""
