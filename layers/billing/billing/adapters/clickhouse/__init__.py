"""ClickHouse: ``usage_store`` (the connection, migrations, inserts), ``rating_queries``,
``portal_queries``, ``metric_rollups`` (per-metric daily figures), ``metric_definitions``,
``tenant_quotas``; the schema in ``migrations/``."""
