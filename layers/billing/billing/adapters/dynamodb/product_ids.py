"""Where the Stripe ids of our catalog are recorded: one BillingTable item (pk ``CATALOG``, sk
``STRIPE_PRODUCTS``) mapping ``billing_key -> product id`` (billing.catalog.product_sync), and one
(sk ``STRIPE_PORTAL_CONFIGURATION``) holding the id of our Billing Portal configuration
(billing.payments.payment_settings_page)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from billing.adapters.dynamodb.items import from_item, to_item


class _CatalogItem:
    """One item of the catalog's partition; the DynamoDB client is built on first use."""

    def __init__(self, table: str, client: Any = None):
        self.table = table
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from billing.adapters.dynamodb.items import dynamodb_client

            self._client = dynamodb_client()
        return self._client


class DynamoProductIds(_CatalogItem):
    def get(self) -> dict[str, str]:
        item = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": "CATALOG"}, "sk": {"S": "STRIPE_PRODUCTS"}},
            ConsistentRead=True,
        ).get("Item")
        if not item:
            return {}
        products = from_item(item).get("products") or {}
        return {str(k): str(v) for k, v in products.items()}

    def put(self, ids: Mapping[str, str]) -> None:
        self.client.put_item(
            TableName=self.table,
            Item=to_item({"pk": "CATALOG", "sk": "STRIPE_PRODUCTS", "products": dict(ids)}),
        )


class DynamoPageConfigId(_CatalogItem):
    """The id every Billing Portal session names (``billing stripe sync-catalog`` records it)."""

    _KEY = {"pk": {"S": "CATALOG"}, "sk": {"S": "STRIPE_PORTAL_CONFIGURATION"}}

    def get(self) -> str | None:
        item = self.client.get_item(TableName=self.table, Key=self._KEY, ConsistentRead=True).get("Item")
        value = from_item(item).get("configuration_id") if item else None
        return str(value) if value else None

    def put(self, config_id: str) -> None:
        self.client.put_item(
            TableName=self.table,
            Item=to_item(
                {"pk": "CATALOG", "sk": "STRIPE_PORTAL_CONFIGURATION", "configuration_id": config_id}
            ),
        )
