-- One row per accepted usage event, priced at event time (cost_usd and price_version never change).
-- ReplacingMergeTree on (tenant_id, timestamp, event_id) is the storage backstop for exactly-once:
-- the ledger in DynamoDB admits an event once, and insert_deduplication_token drops a replayed block.
CREATE TABLE IF NOT EXISTS usage_events
(
    tenant_id      LowCardinality(String),
    event_id       String,
    timestamp      DateTime64(3, 'UTC'),
    type           LowCardinality(String),
    model          LowCardinality(String),
    queries        UInt8,
    input_tokens   UInt64,
    output_tokens  UInt64,
    bytes          UInt64,
    cost_usd       Decimal(38, 9),
    price_version  LowCardinality(String),
    accepted_at    DateTime64(3, 'UTC'),
    stored_at      DateTime64(3, 'UTC') DEFAULT now64(3),
    -- If a copy of an event is ever stored twice, merges and FINAL keep the FIRST one stored, so an
    -- event's stored_at (which decides the statement that bills it) never moves.
    keep_first     UInt64 MATERIALIZED 9999999999999 - toUInt64(toUnixTimestamp64Milli(stored_at))
)
ENGINE = ReplacingMergeTree(keep_first)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant_id, timestamp, event_id)
SETTINGS non_replicated_deduplication_window = 10000;
