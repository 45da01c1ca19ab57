"""Alerts on a tenant's usage of a metric or its spend so far in the period
(``billing.alerts.evaluation``)."""
