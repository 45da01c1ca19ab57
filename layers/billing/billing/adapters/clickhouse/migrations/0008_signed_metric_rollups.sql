-- The per-metric rollup (0006) under corrections (0007): a void row (sign -1) takes its event off the
-- day's count (events is sum(sign)) and its negated quantities and number properties off the sums,
-- so counts and sums read from the rollup are the corrected ones; the counters become signed to
-- hold the negations. The max, the latest value and the distinct values are kept over the rows
-- inserted with sign 1 only, and are not read for figures: a voided event's value cannot be taken
-- back out of a merged max or uniqExact state, so the usage page reads those aggregations from
-- usage_events FINAL (billing.adapters.clickhouse.metric_rollups).
ALTER TABLE usage_metrics_daily MODIFY COLUMN events SimpleAggregateFunction(sum, Int128), MODIFY COLUMN queries SimpleAggregateFunction(sum, Int128), MODIFY COLUMN input_tokens SimpleAggregateFunction(sum, Int128), MODIFY COLUMN output_tokens SimpleAggregateFunction(sum, Int128), MODIFY COLUMN bytes SimpleAggregateFunction(sum, Int128);
DROP VIEW IF EXISTS usage_metrics_daily_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_metrics_daily_mv TO usage_metrics_daily AS
SELECT tenant_id, toDate(timestamp) AS day, type, model, string_properties, p.1 AS property,
       sum(sign) AS events, sum(toDecimal256(p.2, 18)) AS total, maxIf(p.2, sign = 1) AS peak,
       argMaxStateIf(p.2, (timestamp, event_id), sign = 1) AS last, uniqExactStateIf(p.2, sign = 1) AS numbers,
       sum(if(p.1 = '', queries, 0)) AS queries, sum(if(p.1 = '', input_tokens, 0)) AS input_tokens,
       sum(if(p.1 = '', output_tokens, 0)) AS output_tokens, sum(if(p.1 = '', bytes, 0)) AS bytes
FROM usage_events
ARRAY JOIN arrayPushFront(arrayZip(mapKeys(number_properties), mapValues(number_properties)),
                          tuple('', toDecimal128(0, 18))) AS p
GROUP BY tenant_id, day, type, model, string_properties, property;
