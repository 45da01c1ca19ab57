-- Quarter-hour rollups, so figures per day can start at any tenant's local midnight: every UTC
-- offset in use since 1972 is a whole number of quarter hours (+05:30, +05:45, -09:30, +14:00), so a
-- local day is a whole number of quarter hours and its figures are exact sums of these rows
-- (grouped by toDate(quarter, zone)). usage_quarter_hourly holds usage_daily's columns;
-- usage_metrics_quarter_hourly the per-metric rollup's (0006, signed as 0008 made it). Both count
-- an event as sum(sign), so a void takes its event off the quarter it was in; the max, the latest
-- value and the distinct values are kept over rows inserted with sign 1 only, as in 0008. The dedup
-- window drops a block dropped as a duplicate in usage_events, as the other rollups do.
CREATE TABLE IF NOT EXISTS usage_quarter_hourly
(
    tenant_id      LowCardinality(String),
    model          LowCardinality(String),
    quarter        DateTime('UTC'),
    events         Int128,
    queries        Int128,
    input_tokens   Int128,
    output_tokens  Int128,
    bytes          Int128,
    cost_usd       Decimal(38, 9)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(quarter)
ORDER BY (tenant_id, quarter, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_quarter_hourly_mv TO usage_quarter_hourly AS
SELECT tenant_id, model, toStartOfFifteenMinutes(timestamp) AS quarter,
       sum(sign) AS events, sum(queries) AS queries,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(bytes) AS bytes, sum(cost_usd) AS cost_usd
FROM usage_events
GROUP BY tenant_id, model, quarter;

-- The rows stored before the view existed (whole seconds: stored_at before the second it was created).
INSERT INTO usage_quarter_hourly
SELECT tenant_id, model, toStartOfFifteenMinutes(timestamp) AS quarter,
       sum(sign) AS events, sum(queries) AS queries,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(bytes) AS bytes, sum(cost_usd) AS cost_usd
FROM usage_events
WHERE stored_at < (SELECT toDateTime64(min(metadata_modification_time), 3, 'UTC') FROM system.tables
                   WHERE database = currentDatabase() AND name = 'usage_quarter_hourly_mv')
GROUP BY tenant_id, model, quarter;

CREATE TABLE IF NOT EXISTS usage_metrics_quarter_hourly
(
    tenant_id          LowCardinality(String),
    quarter            DateTime('UTC'),
    type               LowCardinality(String),
    model              LowCardinality(String),
    string_properties  Map(LowCardinality(String), String),
    property           LowCardinality(String),
    events             SimpleAggregateFunction(sum, Int128),
    total              SimpleAggregateFunction(sum, Decimal(76, 18)),
    peak               SimpleAggregateFunction(max, Decimal(38, 18)),
    last               AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(3, 'UTC'), String)),
    numbers            AggregateFunction(uniqExact, Decimal(38, 18)),
    queries            SimpleAggregateFunction(sum, Int128),
    input_tokens       SimpleAggregateFunction(sum, Int128),
    output_tokens      SimpleAggregateFunction(sum, Int128),
    bytes              SimpleAggregateFunction(sum, Int128)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(quarter)
ORDER BY (tenant_id, quarter, type, model, string_properties, property)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_metrics_quarter_hourly_mv TO usage_metrics_quarter_hourly AS
SELECT tenant_id, toStartOfFifteenMinutes(timestamp) AS quarter, type, model, string_properties, p.1 AS property,
       sum(sign) AS events, sum(toDecimal256(p.2, 18)) AS total, maxIf(p.2, sign = 1) AS peak,
       argMaxStateIf(p.2, (timestamp, event_id), sign = 1) AS last, uniqExactStateIf(p.2, sign = 1) AS numbers,
       sum(if(p.1 = '', queries, 0)) AS queries, sum(if(p.1 = '', input_tokens, 0)) AS input_tokens,
       sum(if(p.1 = '', output_tokens, 0)) AS output_tokens, sum(if(p.1 = '', bytes, 0)) AS bytes
FROM usage_events
ARRAY JOIN arrayPushFront(arrayZip(mapKeys(number_properties), mapValues(number_properties)),
                          tuple('', toDecimal128(0, 18))) AS p
GROUP BY tenant_id, quarter, type, model, string_properties, property;

INSERT INTO usage_metrics_quarter_hourly
SELECT tenant_id, toStartOfFifteenMinutes(timestamp) AS quarter, type, model, string_properties, p.1 AS property,
       sum(sign) AS events, sum(toDecimal256(p.2, 18)) AS total, maxIf(p.2, sign = 1) AS peak,
       argMaxStateIf(p.2, (timestamp, event_id), sign = 1) AS last, uniqExactStateIf(p.2, sign = 1) AS numbers,
       sum(if(p.1 = '', queries, 0)) AS queries, sum(if(p.1 = '', input_tokens, 0)) AS input_tokens,
       sum(if(p.1 = '', output_tokens, 0)) AS output_tokens, sum(if(p.1 = '', bytes, 0)) AS bytes
FROM usage_events
ARRAY JOIN arrayPushFront(arrayZip(mapKeys(number_properties), mapValues(number_properties)),
                          tuple('', toDecimal128(0, 18))) AS p
WHERE stored_at < (SELECT toDateTime64(min(metadata_modification_time), 3, 'UTC') FROM system.tables
                   WHERE database = currentDatabase() AND name = 'usage_metrics_quarter_hourly_mv')
GROUP BY tenant_id, quarter, type, model, string_properties, property;
