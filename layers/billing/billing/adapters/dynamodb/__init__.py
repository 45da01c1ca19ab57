"""DynamoDB, one module per kind of item: ``items`` (shared (de)serialisation and conditional puts),
``tenants``, ``usage_ledger`` (claims and quota counters), ``quota_reads``, ``statements`` (periods and
statements), ``invoice_records``, ``dunning``, ``credit_ledger``, ``product_ids``."""
