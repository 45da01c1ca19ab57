"""What is sold: ``plans`` (the plan catalog: fees, quotas, trials, charges, commitments) and
``product_sync`` (our plans and usage kinds as Stripe products)."""
