"""Dunning notices to the stack's EventBridge bus (implements billing.dunning.notices.NoticePublisher),
and the invoice details a notice carries (amount due, hosted invoice URL) from our invoice records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from billing.dunning.notices import InvoiceDetails, Notice
from billing.kernel.notices import FactNotice
from billing.runtime.observability import logger

SOURCE = "billing"
_BATCH = 10  # PutEvents takes at most 10 entries


class EventBridgeFactNotices:
    """``source: billing``, ``detail-type``: the notice's kind (``alert.triggered``,
    ``webhook_endpoint.disabled``...), ``detail``: ``FactNotice.detail()``. An empty bus name
    publishes nothing (notices switched off); a failure is logged, never raised."""

    def __init__(self, bus_name: str, client: Any = None):
        self.bus_name = bus_name
        self._client = client

    def publish(self, notices: Sequence[FactNotice]) -> None:
        if not self.bus_name or not notices:
            return
        if self._client is None:
            from billing.adapters.aws.clients import events_client

            self._client = events_client()
        for start in range(0, len(notices), _BATCH):
            batch = notices[start : start + _BATCH]
            entries = [
                {
                    "Source": SOURCE,
                    "DetailType": n.kind,
                    "Detail": json.dumps(n.detail()),
                    "EventBusName": self.bus_name,
                    "Resources": [],
                    "Time": n.at,
                }
                for n in batch
            ]
            try:
                result = self._client.put_events(Entries=entries)
            except Exception:  # noqa: BLE001 - a lost notice never fails the fact it reports
                logger.exception("notices not published", extra={"ids": [n.id for n in batch]})
                continue
            if result.get("FailedEntryCount"):
                logger.warning(
                    "some notices not published",
                    extra={"failed": result["FailedEntryCount"], "ids": [n.id for n in batch]},
                )


class EventBridgeNoticePublisher:
    """``source: billing``, ``detail-type: dunning.{kind}``, ``detail``: ``Notice.detail()``.
    An empty bus name publishes nothing (notices switched off)."""

    def __init__(self, bus_name: str, client: Any = None):
        self.bus_name = bus_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from billing.adapters.aws.clients import events_client

            self._client = events_client()
        return self._client

    def publish(self, notices: Sequence[Notice]) -> None:
        if not self.bus_name or not notices:
            return
        for start in range(0, len(notices), _BATCH):
            batch = notices[start : start + _BATCH]
            entries = [
                {
                    "Source": SOURCE,
                    "DetailType": f"dunning.{n.kind}",
                    "Detail": json.dumps(n.detail()),
                    "EventBusName": self.bus_name,
                    "Resources": [],
                    "Time": n.at,
                }
                for n in batch
            ]
            try:
                result = self.client.put_events(Entries=entries)
            except Exception:  # noqa: BLE001 - a lost notice never fails the transition it reports
                logger.exception("notices not published", extra={"count": len(batch)})
                continue
            if result.get("FailedEntryCount"):
                logger.warning(
                    "some notices not published",
                    extra={"failed": result["FailedEntryCount"], "ids": [n.id for n in batch]},
                )


class DynamoInvoiceDetails:
    """(tenant, Stripe invoice id) -> amount, currency, hosted URL, from the invoice record found
    through its ``STRIPEINV#`` index entry."""

    def __init__(self, directory: Any, records: Any):
        self.directory = directory  # DunningStore.find_invoice
        self.records = records  # InvoiceRecordRepository.get

    def __call__(self, tenant_id: str, invoice_id: str) -> InvoiceDetails | None:
        found = self.directory.find_invoice(invoice_id)
        if found is None:
            return None
        record = self.records.get(*found)
        if record is None or record.tenant_id != tenant_id:
            return None
        return InvoiceDetails(
            amount_due=int(record.stripe_total if record.stripe_total is not None else record.total_cents),
            currency=record.currency,
            hosted_invoice_url=record.hosted_invoice_url,
            month=record.month,
        )
