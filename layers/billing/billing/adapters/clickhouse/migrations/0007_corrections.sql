-- Corrections (billing.metering.corrections): an accepted event is voided or amended by inserting
-- rows, never by rewriting one. A void is a row of its own (event_id "<correction_id>#void") with
-- sign -1, the same tenant, timestamp, type and model as the row it negates (named in corrects), and
-- every quantity, the cost and each number property negated; an amend is that void plus the new
-- version (event_id "<correction_id>#amend", sign 1, corrects naming the customer's event id).
-- So every sum over usage_events (and over the rollups) is the corrected sum as it stands, a count is
-- sum(sign), and a correction stored after a close is late data like any other row. Reads that are
-- not sums (max, latest, unique counts) take the live rows: sign = 1 and no negation names them.
-- Quantities become signed to hold the negations (Int16 holds every UInt8 query count and its
-- negation; Int128 keeps migration 0004's headroom).
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS sign Int8 DEFAULT 1, ADD COLUMN IF NOT EXISTS corrects String DEFAULT '';
ALTER TABLE usage_events MODIFY COLUMN queries Int16, MODIFY COLUMN input_tokens Int128, MODIFY COLUMN output_tokens Int128, MODIFY COLUMN bytes Int128;
ALTER TABLE usage_hourly MODIFY COLUMN events Int128, MODIFY COLUMN queries Int128, MODIFY COLUMN input_tokens Int128, MODIFY COLUMN output_tokens Int128, MODIFY COLUMN bytes Int128;
ALTER TABLE usage_daily MODIFY COLUMN events Int128, MODIFY COLUMN queries Int128, MODIFY COLUMN input_tokens Int128, MODIFY COLUMN output_tokens Int128, MODIFY COLUMN bytes Int128;
-- The rollups count events as sum(sign): a void takes its event off the hour and the day it was in.
DROP VIEW IF EXISTS usage_hourly_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT tenant_id, model, toStartOfHour(timestamp) AS hour,
       sum(sign) AS events, sum(queries) AS queries,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(bytes) AS bytes, sum(cost_usd) AS cost_usd
FROM usage_events
GROUP BY tenant_id, model, hour;
DROP VIEW IF EXISTS usage_daily_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
SELECT tenant_id, model, toDate(timestamp) AS day,
       sum(sign) AS events, sum(queries) AS queries,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(bytes) AS bytes, sum(cost_usd) AS cost_usd
FROM usage_events
GROUP BY tenant_id, model, day;
