-- Each tenant's monthly query quota, exported from the tenant records (DynamoDB is the source of
-- truth) so the dashboards can show "quota used %". One row per export; the newest row of a tenant
-- wins (ReplacingMergeTree on updated_at; queries read it with argMax, never a bare SELECT).
-- query_quota NULL means unlimited.
CREATE TABLE IF NOT EXISTS tenant_quotas
(
    tenant_id    LowCardinality(String),
    plan         LowCardinality(String),
    query_quota  Nullable(UInt64),
    updated_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY tenant_id;
