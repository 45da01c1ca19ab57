-- Event properties: text values and exact numbers by name, in two maps (names are few and repeat,
-- hence LowCardinality keys). Decimal(38, 18) is the precision ingest enforces (billing.metering.events:
-- below 10^20, at most 18 fractional digits), so a stored number is the number sent, digit for digit.
-- Existing rows read as empty maps; the sort key, partitions and the rollups' views are unchanged
-- (the views select their own columns), so every total reads as before.
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS string_properties Map(LowCardinality(String), String), ADD COLUMN IF NOT EXISTS number_properties Map(LowCardinality(String), Decimal(38, 18));
