"""Adapters: the only modules that talk to ClickHouse, AWS (boto3) or Stripe, one folder per
technology (``aws``, ``dynamodb``, ``clickhouse``, ``stripe``). Each implements a protocol its domain
declares; only the composition root (``billing.runtime.container``) imports them."""
