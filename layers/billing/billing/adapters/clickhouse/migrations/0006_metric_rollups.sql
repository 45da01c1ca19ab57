-- Per-metric daily figures: one rollup that any catalog metric reads, whatever the catalog says (a
-- metric defined later reads the days before it existed). A row is a tenant's day of one event type,
-- model and exact set of text properties (the key holds string_properties itself, so a metric's
-- filters and a charge's group_by read the rollup exactly as they read usage_events), and `property`:
-- '' for the row of every such event, a name for the row of the events carrying that number property.
-- Each figure merges exactly: sums (count, sum), max, the latest value's argMax state (latest
-- timestamp, then greatest event_id, as billing.catalog.metrics says) and an exact uniqExact state of
-- the numbers (never an approximate uniq); text values are distinct by key. The dedup window makes a
-- block dropped as a duplicate in usage_events also dropped here, as in usage_daily.
CREATE TABLE IF NOT EXISTS usage_metrics_daily
(
    tenant_id          LowCardinality(String),
    day                Date,
    type               LowCardinality(String),
    model              LowCardinality(String),
    string_properties  Map(LowCardinality(String), String),
    property           LowCardinality(String),
    events             SimpleAggregateFunction(sum, UInt64),
    total              SimpleAggregateFunction(sum, Decimal(76, 18)),
    peak               SimpleAggregateFunction(max, Decimal(38, 18)),
    last               AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(3, 'UTC'), String)),
    numbers            AggregateFunction(uniqExact, Decimal(38, 18)),
    queries            SimpleAggregateFunction(sum, UInt128),
    input_tokens       SimpleAggregateFunction(sum, UInt128),
    output_tokens      SimpleAggregateFunction(sum, UInt128),
    bytes              SimpleAggregateFunction(sum, UInt128)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, day, type, model, string_properties, property)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_metrics_daily_mv TO usage_metrics_daily AS
SELECT tenant_id, toDate(timestamp) AS day, type, model, string_properties, p.1 AS property,
       count() AS events, sum(toDecimal256(p.2, 18)) AS total, max(p.2) AS peak,
       argMaxState(p.2, (timestamp, event_id)) AS last, uniqExactState(p.2) AS numbers,
       sum(if(p.1 = '', queries, 0)) AS queries, sum(if(p.1 = '', input_tokens, 0)) AS input_tokens,
       sum(if(p.1 = '', output_tokens, 0)) AS output_tokens, sum(if(p.1 = '', bytes, 0)) AS bytes
FROM usage_events
ARRAY JOIN arrayPushFront(arrayZip(mapKeys(number_properties), mapValues(number_properties)),
                          tuple('', toDecimal128(0, 18))) AS p
GROUP BY tenant_id, day, type, model, string_properties, property;

-- The rows stored before the view existed (whole seconds: stored_at before the second it was created).
INSERT INTO usage_metrics_daily
SELECT tenant_id, toDate(timestamp) AS day, type, model, string_properties, p.1 AS property,
       count() AS events, sum(toDecimal256(p.2, 18)) AS total, max(p.2) AS peak,
       argMaxState(p.2, (timestamp, event_id)) AS last, uniqExactState(p.2) AS numbers,
       sum(if(p.1 = '', queries, 0)) AS queries, sum(if(p.1 = '', input_tokens, 0)) AS input_tokens,
       sum(if(p.1 = '', output_tokens, 0)) AS output_tokens, sum(if(p.1 = '', bytes, 0)) AS bytes
FROM usage_events
ARRAY JOIN arrayPushFront(arrayZip(mapKeys(number_properties), mapValues(number_properties)),
                          tuple('', toDecimal128(0, 18))) AS p
WHERE stored_at < (SELECT toDateTime64(min(metadata_modification_time), 3, 'UTC') FROM system.tables
                   WHERE database = currentDatabase() AND name = 'usage_metrics_daily_mv')
GROUP BY tenant_id, day, type, model, string_properties, property;

-- The catalog's metric definitions, for the dashboards (Grafana reads ClickHouse, not the catalog):
-- written by `billing db migrate` from the plans file in force, one batch per export; readers take
-- the newest batch (max exported_at), so a metric removed from the catalog leaves the list.
-- filters: (property, keep, values), keep 1 for `in`, 0 for `not_in`; models [] = any model;
-- property and field '' when not read; per_ms the time unit of a time_weighted_sum (0 otherwise).
CREATE TABLE IF NOT EXISTS metric_definitions
(
    id           LowCardinality(String),
    name         String,
    unit         String,
    aggregation  LowCardinality(String),
    event_types  Array(String),
    models       Array(String),
    filters      Array(Tuple(String, UInt8, Array(String))),
    property     String,
    field        String,
    per_ms       UInt64,
    exported_at  DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (exported_at, id);
