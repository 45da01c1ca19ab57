-- Each tenant's time zone (the IANA name of its billing calendar in force when exported, 'UTC' for a
-- tenant without a calendar), exported with its quota, so the tenant dashboard reads its figures per
-- local day (toDate(quarter, time_zone) over the quarter-hour rollups of 0009). Rows exported before
-- this column existed read as 'UTC', what their dashboards showed. The newest row of a tenant wins, as
-- for its quota (argMax on updated_at).
ALTER TABLE tenant_quotas ADD COLUMN IF NOT EXISTS time_zone LowCardinality(String) DEFAULT 'UTC';
