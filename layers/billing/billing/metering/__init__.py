"""Usage in: ``events`` (the wire format), ``price_book`` (event-time cost), ``ingest`` (admission and
orchestration of a batch), ``claims`` (a batch's exactly-once claims and their failure exits),
``storing`` (blocks to ClickHouse, else the fallback queue), ``exactly_once`` (the ledger protocol and
dedup tokens), ``fallback`` (blocks through SQS and their replay), ``quotas`` (limits, admission,
reconciliation), ``quota_export`` (quotas for the dashboards)."""
