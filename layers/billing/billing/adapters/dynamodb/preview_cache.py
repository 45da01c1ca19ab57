"""BillingTable items holding the usage page's cached statement previews.

pk "PREVIEW#{tenant_id}"  sk "MONTH#{period key}"  body (the Statement as JSON, Decimals as text),
                                                computed_at (ISO), inputs_digest, expires_at (TTL)
pk "PREVIEW#{tenant_id}"  sk "METRICS#{period key}"  body (the per-metric figures as JSON,
                                                billing.portal.metric_cache), computed_at, inputs_digest,
                                                asked_digest, expires_at (TTL)
pk "PREVIEW#{tenant_id}"  sk "USAGE#{period key}"  body (the per-day, per-model and corrections
                                                figures as JSON, billing.portal.usage_cache),
                                                computed_at, inputs_digest, span_digest, expires_at (TTL)

(the period key: ``YYYY-MM`` for a UTC month, a tenant calendar period's key otherwise)

Only the portal function reads and writes these (its policy is limited to the ``PREVIEW#`` keys);
an item is a cache: losing it costs one re-rating.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from billing.adapters.dynamodb.items import dynamodb_client
from billing.kernel.calendar import Period
from billing.kernel.periods import Month, iso, parse_instant
from billing.portal.metric_cache import CachedFigures
from billing.portal.preview_cache import CachedPreview
from billing.portal.usage_cache import CachedUsage
from billing.statements.statement import Statement

KEEP_DAYS = 40  # DynamoDB's TTL drops an item this long after it was computed (a month and its close)


class DynamoPreviewStore:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    @staticmethod
    def key(tenant_id: str, month: Month | Period | str) -> dict[str, Any]:
        return {"pk": {"S": f"PREVIEW#{tenant_id}"}, "sk": {"S": f"MONTH#{month}"}}

    def get(self, tenant_id: str, month: Month | Period) -> CachedPreview | None:
        item = self.client.get_item(TableName=self.table, Key=self.key(tenant_id, month)).get("Item")
        return self.parse(item) if item else None

    @staticmethod
    def parse(item: dict[str, Any]) -> CachedPreview:
        return CachedPreview(
            statement=Statement.model_validate(json.loads(item["body"]["S"])),
            computed_at=parse_instant(item["computed_at"]["S"]),
            inputs_digest=item["inputs_digest"]["S"],
        )

    def put(self, tenant_id: str, month: Month | Period, preview: CachedPreview) -> None:
        expires = int(preview.computed_at.timestamp()) + KEEP_DAYS * 86400
        self.client.put_item(
            TableName=self.table,
            Item={
                **self.key(tenant_id, month),
                "body": {"S": preview.statement.model_dump_json()},
                "computed_at": {"S": iso(preview.computed_at)},
                "inputs_digest": {"S": preview.inputs_digest},
                "expires_at": {"N": str(expires)},
            },
        )


class DynamoMetricFiguresStore:
    """The usage page's cached per-metric figures, one item per tenant and period (beside its preview)."""

    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    @staticmethod
    def key(tenant_id: str, period: Month | Period | str) -> dict[str, Any]:
        return {"pk": {"S": f"PREVIEW#{tenant_id}"}, "sk": {"S": f"METRICS#{period}"}}

    def get(self, tenant_id: str, period: Month | Period) -> CachedFigures | None:
        item = self.client.get_item(TableName=self.table, Key=self.key(tenant_id, period)).get("Item")
        return self.parse(item) if item else None

    @staticmethod
    def parse(item: dict[str, Any]) -> CachedFigures:
        return CachedFigures(
            figures=json.loads(item["body"]["S"]),
            computed_at=parse_instant(item["computed_at"]["S"]),
            inputs_digest=item["inputs_digest"]["S"],
            asked_digest=item["asked_digest"]["S"],
        )

    def put(self, tenant_id: str, period: Month | Period, cached: CachedFigures) -> None:
        """Store the figures; figures over DynamoDB's item size (thousands of groups) are not
        cached, and the page reads them on every request (a cache: never a failed page)."""
        expires = int(cached.computed_at.timestamp()) + KEEP_DAYS * 86400
        _unless_too_large(lambda: self._put(tenant_id, period, cached, expires))

    def _put(self, tenant_id: str, period: Month | Period, cached: CachedFigures, expires: int) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                **self.key(tenant_id, period),
                "body": {"S": json.dumps(cached.figures, separators=(",", ":"))},
                "computed_at": {"S": iso(cached.computed_at)},
                "inputs_digest": {"S": cached.inputs_digest},
                "asked_digest": {"S": cached.asked_digest},
                "expires_at": {"N": str(expires)},
            },
        )


def _unless_too_large(put: Any) -> None:
    """Run ``put``; an item over DynamoDB's size limit is not cached (a cache: never a failed page)."""
    try:
        put()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") != "ValidationException" or "size" not in str(error.get("Message", "")).lower():
            raise


class DynamoUsageFiguresStore:
    """The usage page's cached per-day, per-model and corrections figures, one item per tenant and
    period (beside its preview)."""

    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    @staticmethod
    def key(tenant_id: str, period: Month | Period | str) -> dict[str, Any]:
        return {"pk": {"S": f"PREVIEW#{tenant_id}"}, "sk": {"S": f"USAGE#{period}"}}

    def get(self, tenant_id: str, period: Month | Period) -> CachedUsage | None:
        item = self.client.get_item(TableName=self.table, Key=self.key(tenant_id, period)).get("Item")
        return self.parse(item) if item else None

    @staticmethod
    def parse(item: dict[str, Any]) -> CachedUsage:
        return CachedUsage(
            body=json.loads(item["body"]["S"]),
            computed_at=parse_instant(item["computed_at"]["S"]),
            inputs_digest=item["inputs_digest"]["S"],
            span_digest=item["span_digest"]["S"],
        )

    def put(self, tenant_id: str, period: Month | Period, cached: CachedUsage) -> None:
        """Store the figures (a period's days and models are far under the item size; a block of
        corrections is at most 50 rows; an item too large all the same is not cached)."""
        expires = int(cached.computed_at.timestamp()) + KEEP_DAYS * 86400
        item = {
            **self.key(tenant_id, period),
            "body": {"S": json.dumps(cached.body, separators=(",", ":"))},
            "computed_at": {"S": iso(cached.computed_at)},
            "inputs_digest": {"S": cached.inputs_digest},
            "span_digest": {"S": cached.span_digest},
            "expires_at": {"N": str(expires)},
        }
        _unless_too_large(lambda: self.client.put_item(TableName=self.table, Item=item))
