-- Hourly and daily rollups per tenant and model, kept by materialized views. The dedup window on
-- the targets makes a block dropped as a duplicate in usage_events also dropped here.
CREATE TABLE IF NOT EXISTS usage_hourly
(
    tenant_id      LowCardinality(String),
    model          LowCardinality(String),
    hour           DateTime('UTC'),
    events         UInt64,
    queries        UInt64,
    input_tokens   UInt64,
    output_tokens  UInt64,
    bytes          UInt64,
    cost_usd       Decimal(38, 9)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, hour, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT tenant_id, model, toStartOfHour(timestamp) AS hour,
       count() AS events, sum(queries) AS queries,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(bytes) AS bytes, sum(cost_usd) AS cost_usd
FROM usage_events
GROUP BY tenant_id, model, hour;

CREATE TABLE IF NOT EXISTS usage_daily
(
    tenant_id      LowCardinality(String),
    model          LowCardinality(String),
    day            Date,
    events         UInt64,
    queries        UInt64,
    input_tokens   UInt64,
    output_tokens  UInt64,
    bytes          UInt64,
    cost_usd       Decimal(38, 9)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, day, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
SELECT tenant_id, model, toDate(timestamp) AS day,
       count() AS events, sum(queries) AS queries,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(bytes) AS bytes, sum(cost_usd) AS cost_usd
FROM usage_events
GROUP BY tenant_id, model, day;
