-- Wide sums: ClickHouse's sum() keeps the column's type, so a month of UInt64
-- token or byte counts could wrap around to a small number. Every counted column becomes UInt128:
-- with the per-event bounds ingest enforces (billing.events: tokens <= 10^12, bytes <= 10^15) no sum
-- of fewer than 10^23 events can overflow. Raw rows and both rollups are widened, so sums read from
-- usage_events (billing) and from the rollups (dashboards) are wide alike; the materialized views'
-- sum() over the widened source columns is UInt128 too.
ALTER TABLE usage_events MODIFY COLUMN input_tokens UInt128, MODIFY COLUMN output_tokens UInt128, MODIFY COLUMN bytes UInt128;
ALTER TABLE usage_hourly MODIFY COLUMN events UInt128, MODIFY COLUMN queries UInt128, MODIFY COLUMN input_tokens UInt128, MODIFY COLUMN output_tokens UInt128, MODIFY COLUMN bytes UInt128;
ALTER TABLE usage_daily MODIFY COLUMN events UInt128, MODIFY COLUMN queries UInt128, MODIFY COLUMN input_tokens UInt128, MODIFY COLUMN output_tokens UInt128, MODIFY COLUMN bytes UInt128;
