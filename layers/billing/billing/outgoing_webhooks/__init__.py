"""Outgoing webhooks: the signed messages we send to the SaaS's own systems (never Stripe's, which
come in through ``billing.payments.stripe_webhooks``).

Where things are: ``events`` (the closed list of event types and their meaning), ``signing``
(secrets, the Standard Webhooks signature, a delivery's id, timestamp, body and headers),
``endpoints`` (where the SaaS wants them, which types each wants, its secret and its rotation; the
storage protocols and the service). The package imports none of its modules: import from the
module that defines a name.
"""
