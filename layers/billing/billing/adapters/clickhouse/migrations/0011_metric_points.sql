-- One narrow row per live event per catalog metric it counts in, for the dashboards' metric panels:
-- the per-metric rollups (0006, 0009) keep one row per exact set of text properties, so a
-- many-valued property (a user id) makes about one rollup row per event, and they cannot take a
-- voided event's maximum, last value or distinct value back out. Here a metric's figure over any
-- range is an aggregate of its own sorted rows (metric_id, tenant_id, timestamp): a count, a sum,
-- a max, the last value (latest timestamp, then greatest event_id), the distinct keys, or a
-- time-weighted sum over the rows in order (billing.catalog.metrics).
--
-- Rows: an event of the metric's types and models passing its filters and carrying what it reads
-- (every such event for a count or an event counter; the number property for sum, max, latest and
-- time_weighted_sum; the property as text or number for unique_count). value is the number read
-- (0 for a count); key is the distinct value of a unique_count ('t' || text, 'n' || number, so the
-- text "3" and the number 3 are two values, and 3 and 3.0, one Decimal(38, 18), are one), '' otherwise.
--
-- Duplicates and corrections, as billing reads usage_events (metric_queries.live_rows and FINAL):
-- ReplacingMergeTree on the key (metric_id, tenant_id, timestamp, event_id) with version
-- keep_first, so of two stored copies of an event FINAL keeps the first stored, as usage_events
-- does. A void (sign -1) is stored under the event_id it negates (corrects) and the same timestamp
-- (a void carries its event's tenant, timestamp, type, model and properties, numbers negated, so it
-- matches the same metrics), with the greatest version and is_void 1: FINAL drops the voided
-- event's row and the void's own. An amend is a live row of its own event_id. So `FROM metric_points
-- FINAL` holds exactly the live rows billing reads; always read it with FINAL.
--
-- The definitions are the newest export of metric_definitions when the event is stored, so
-- export_metric_definitions (billing.adapters.clickhouse.metric_definitions) rebuilds the rows of
-- every metric it adds, changes or removes from usage_events. The dedup window drops a block
-- dropped as a duplicate in usage_events, as the rollups do.
CREATE TABLE IF NOT EXISTS metric_points
(
    metric_id  LowCardinality(String),
    tenant_id  LowCardinality(String),
    timestamp  DateTime64(3, 'UTC'),
    event_id   String,
    value      Decimal(38, 18),
    key        String,
    version    UInt64,
    is_void    UInt8,
    stored_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version, is_void)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (metric_id, tenant_id, timestamp, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS metric_points_mv TO metric_points AS
SELECT m.1 AS metric_id, tenant_id, timestamp, if(sign = -1, corrects, usage_events.event_id) AS event_id,
       if(m.2 = 'count', toDecimal128(0, 18),
          if(m.7 = '', number_properties[m.6],
             toDecimal128(multiIf(m.7 = 'queries', queries, m.7 = 'input_tokens', input_tokens,
                                  m.7 = 'output_tokens', output_tokens, m.7 = 'bytes', bytes,
                                  input_tokens + output_tokens), 18))) AS value,
       if(m.2 != 'unique_count', '',
          if(m.7 = '' AND mapContains(string_properties, m.6), concat('t', string_properties[m.6]),
             concat('n', toString(value)))) AS key,
       if(sign = -1, toUInt64(18446744073709551615), keep_first) AS version,
       toUInt8(sign = -1) AS is_void, stored_at
FROM usage_events
ARRAY JOIN (SELECT groupArray(tuple(id, aggregation, event_types, models, filters, property, field))
            FROM metric_definitions
            WHERE id != '' AND exported_at = (SELECT max(exported_at) FROM metric_definitions)) AS m
WHERE has(m.3, type) AND (empty(m.4) OR has(m.4, model))
  AND arrayAll(f -> (mapContains(string_properties, f.1) AND has(f.3, string_properties[f.1])) = (f.2 = 1), m.5)
  AND (m.2 = 'count' OR m.7 != '' OR mapContains(number_properties, m.6)
       OR (m.2 = 'unique_count' AND mapContains(string_properties, m.6)));

-- The rows stored before the view existed (whole seconds: stored_at before the second it was
-- created), for the definitions exported before this migration.
INSERT INTO metric_points SETTINGS insert_deduplicate = 0
SELECT m.1 AS metric_id, tenant_id, timestamp, if(sign = -1, corrects, usage_events.event_id) AS event_id,
       if(m.2 = 'count', toDecimal128(0, 18),
          if(m.7 = '', number_properties[m.6],
             toDecimal128(multiIf(m.7 = 'queries', queries, m.7 = 'input_tokens', input_tokens,
                                  m.7 = 'output_tokens', output_tokens, m.7 = 'bytes', bytes,
                                  input_tokens + output_tokens), 18))) AS value,
       if(m.2 != 'unique_count', '',
          if(m.7 = '' AND mapContains(string_properties, m.6), concat('t', string_properties[m.6]),
             concat('n', toString(value)))) AS key,
       if(sign = -1, toUInt64(18446744073709551615), keep_first) AS version,
       toUInt8(sign = -1) AS is_void, stored_at
FROM usage_events
ARRAY JOIN (SELECT groupArray(tuple(id, aggregation, event_types, models, filters, property, field))
            FROM metric_definitions
            WHERE id != '' AND exported_at = (SELECT max(exported_at) FROM metric_definitions)) AS m
WHERE has(m.3, type) AND (empty(m.4) OR has(m.4, model))
  AND arrayAll(f -> (mapContains(string_properties, f.1) AND has(f.3, string_properties[f.1])) = (f.2 = 1), m.5)
  AND (m.2 = 'count' OR m.7 != '' OR mapContains(number_properties, m.6)
       OR (m.2 = 'unique_count' AND mapContains(string_properties, m.6)))
  AND stored_at < (SELECT toDateTime64(min(metadata_modification_time), 3, 'UTC') FROM system.tables
                   WHERE database = currentDatabase() AND name = 'metric_points_mv');
