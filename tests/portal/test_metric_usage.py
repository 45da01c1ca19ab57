"""The usage page per catalog metric: each metric the tenant's plan charges, its period-to-date
quantity exactly as the metric query computes it from usage_events FINAL, one row per group of a
grouped charge with the values in words; nothing of it for a tenant whose plan charges none."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from html import unescape

from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.catalog.metrics import MetricDefinition
from billing.kernel.periods import Month
from billing.portal.metric_table import quantity_text
from billing.runtime import container
from tests.portal.conftest import LONG_GPU, NOW

NOV = Month(2025, 11)


def reference(metric_id: str, **only: str) -> Decimal | None:
    """The metric over gpuco's November so far, of the events whose text properties are ``only``."""
    metric = container.plan_catalog().metric(metric_id)
    document = metric.model_dump(by_alias=True, exclude_none=True)
    document["filters"] = [{"property": k, "in": [v]} for k, v in only.items()]
    definition = MetricDefinition.model_validate(document)
    return ClickHouseMetrics(container.usage_store()).value(definition, "gpuco", NOV.start, NOW)


def test_the_page_data_has_every_charged_metric_with_its_groups(portal, metered):
    # When gpuco's page data is asked for
    data = json.loads(portal.data(portal.token(metered))["body"])
    # Then it lists the plan's three catalog metrics, in the plan's order, with name and unit
    metrics = data["metrics"]
    assert [(m["metric"], m["name"], m["unit"]) for m in metrics] == [
        ("gpu_seconds", "GPU time", "GPU-seconds"),
        ("active_users", "Active users", "users"),
        ("peak_seats", "Peak seats", "seats"),
    ]
    # And GPU time has one row per (gpu, region) seen, in words, each equal to the metric query
    gpu = metrics[0]
    assert gpu["group_by"] == ["gpu", "region"]
    labels = [g["label"] for g in gpu["groups"]]
    assert "gpu: none, region: eu" in labels and f"gpu: {LONG_GPU}, region: us" in labels
    assert len(labels) == 8
    for group in gpu["groups"]:
        values = group["values"]
        if values["gpu"]:
            assert Decimal(group["quantity"]) == reference("gpu_seconds", **values), values
    assert sum(Decimal(g["quantity"]) for g in gpu["groups"]) == reference("gpu_seconds")
    # And the ungrouped metrics are one row each: 7 users, a peak of 14 seats
    assert [(g["label"], g["quantity"]) for g in metrics[1]["groups"]] == [("", "7")]
    assert [(g["label"], g["quantity"]) for g in metrics[2]["groups"]] == [("", "14")]
    assert reference("active_users") == 7 and reference("peak_seats") == 14


def test_the_html_page_shows_a_row_per_metric_and_group(portal, metered):
    html = portal.page(portal.token(metered))["body"]
    # Then the "Usage by metric" table has a row per group, its words, quantity and unit
    rows = re.findall(
        r'<tr data-metric="([^"]+)" data-group="([^"]*)"><th scope="row">(.*?)</th>'
        r'<td class="num" data-label="Quantity" data-value="([^"]*)">(.*?)</td>',
        html,
    )
    assert len(rows) == 10
    by_group = {(m, unescape(g)): (Decimal(v), unescape(text)) for m, g, _th, v, text in rows}
    value, text = by_group[("gpu_seconds", "gpu: h100, region: eu")]
    assert value == reference("gpu_seconds", gpu="h100", region="eu")
    assert text == quantity_text(value, "GPU-seconds") and text.endswith(" GPU-seconds")
    assert by_group[("peak_seats", "")] == (Decimal(14), "14 seats")
    assert "so far this month" in html and "<em>none</em> is usage without that property" in html


def test_a_plan_without_catalog_metrics_shows_no_metric_section(portal, metered):
    data = json.loads(portal.data(portal.token("acme"))["body"])
    assert data["metrics"] == []
    assert 'id="metrics"' not in portal.page(portal.token("acme"))["body"]


def test_quantities_read_as_words() -> None:
    assert quantity_text(Decimal("1234.5"), "GPU-seconds") == "1,234.5 GPU-seconds"
    assert quantity_text(Decimal("12.3456789"), "GB-hours") == "about 12.345679 GB-hours"
    assert quantity_text(Decimal("3.000000000000000000"), "seats") == "3 seats"
    assert quantity_text(None, "seats") == "no value yet"


def test_a_gauge_in_the_running_period_says_so_far_and_why_the_preview_line_is_larger() -> None:
    from billing.portal.metric_table import metrics_section
    from billing.portal.metrics import GroupUsage, MetricUsage

    # Given a storage gauge (GB held, per hour) and a sum, with their figures so far
    storage = MetricDefinition.model_validate(
        {"id": "storage", "name": "Storage", "unit": "GB-hours", "event_types": ["volume"],
         "aggregation": "time_weighted_sum", "property": "gb", "per": "hour"}
    )  # fmt: skip
    seconds = MetricDefinition.model_validate(
        {"id": "gpu", "name": "GPU time", "unit": "GPU-seconds", "event_types": ["gpu_job"],
         "aggregation": "sum", "property": "seconds"}
    )  # fmt: skip
    figures = [
        MetricUsage(storage, (), [GroupUsage((), Decimal(313000))]),
        MetricUsage(seconds, (), [GroupUsage((), Decimal(60))]),
    ]
    # When the table is shown for the running period, and for a past one
    running = metrics_section(figures, "so far this month, as of 15:30 UTC", current=True)
    past = metrics_section(figures, "in October 2025")
    # Then in the running period the gauge's row says its figure is so far, the sum's does not, and
    # a note under the table says the statement preview bills the last value held to the period's end
    assert '<td data-label="Measured as">gb held over time, per hour, so far</td>' in running
    assert '<td data-label="Measured as">total seconds</td>' in running
    assert "bills the last value held as if kept until the period ends" in running
    # And a past period's gauge is the whole period's: no "so far", no note
    assert "so far" not in past and 'id="metrics-held"' not in past
    assert "What your plan charges for, in October 2025 (UTC days)." in past


def test_a_plan_of_catalog_charges_alone_gets_a_sentence_instead_of_an_empty_cost_chart(portal, metered):
    # When gpuco, whose usage is all catalog metrics (no metered cost), opens its page
    html = portal.page(portal.token(metered))["body"]
    # Then the cost figure says there is none and where its charges are, with no chart of zeros
    assert 'id="cost-chart"' not in html
    assert (
        '<p id="cost-empty">No metered cost so far this month. What your plan charges for is under '
        '<a href="#metrics-h">Usage by metric</a>, and the statement lines price it.</p>'
    ) in html
    # And its queries chart is still drawn, as a tenant with metered cost's both are
    assert 'id="queries-chart"' in html
    acme = portal.page(portal.token("acme"))["body"]
    assert 'id="cost-chart"' in acme and 'id="cost-empty"' not in acme
