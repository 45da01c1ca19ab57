"""The payment provider seen from billing: ``provider`` (value types and the protocols invoicing and
dunning use), ``card_on_file`` (hosted setup, the provider's billing-settings page, the saved card),
``stripe_webhooks`` (Stripe events verified, deduplicated and turned into dunning facts)."""
