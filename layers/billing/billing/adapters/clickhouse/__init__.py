"""ClickHouse: ``usage_store`` (the connection, migrations, inserts), ``rating_queries``,
``portal_queries``, ``tenant_quotas``; the schema in ``migrations/``."""
