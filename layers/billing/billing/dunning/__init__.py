"""Dunning: per-invoice payment state, the tenant's standing derived from it, and the audit trail.

Pure domain: no AWS, no Stripe. Storage and the payment gateway come in through Protocols. The
package imports none of its modules (Settings reads ``schedule`` on every cold start, which must not
load the service): import from the module that defines a name. Where things are: ``facts`` (facts and the per-invoice record), ``schedule`` (when each retry is
due, and when retries end), ``timeline`` (standing and audit trail), ``notices`` (transitions as
events), ``service`` (the service and the storage protocol it needs).

Model (order-independent by construction)
-----------------------------------------
Everything we learn about an invoice is a dated *fact* (a ``Mark``: the Stripe event's ``created``
time and its id, or our retry's time and ``retry:{invoice}:{n}``). A per-invoice record keeps only
commutative, idempotent aggregates of those facts:

- ``first_failure``: the earliest failed payment that happened *before* the invoice was closed;
- ``closed``: the earliest resolution of any kind (paid, void, uncollectible) - it ends dunning;
- ``resolution``: the strongest resolution (paid/void beat uncollectible; earliest wins a tie);
- ``attempts``: our own retries, by number.

Applying the same facts in any order, any number of times, gives the same record. Hence the
invoice state never moves backwards (a ``payment_failed`` dated after ``paid`` changes nothing)
and a shuffled, duplicated stream ends where the ordered one does.

The tenant's standing and its audit trail are a pure function of its invoice records (plus the
date its Stripe customer was deleted, if it was): ``timeline()`` walks the facts in time order and
emits every change of state, so the stored trail is the same whatever order events arrived in.

- tenant ``past_due`` while any invoice has failed and is not closed;
- tenant ``suspended`` while any such invoice also had its last retry fail (or the customer was
  deleted in Stripe, so it cannot be collected);
- otherwise ``active``.

Retries run at ``first_failure + retry_days[k]`` (default 3, 7, 14 days) for k = retries made, until
``len(retry_days)`` were made (``schedule``: the one place that formula is written).
"""
