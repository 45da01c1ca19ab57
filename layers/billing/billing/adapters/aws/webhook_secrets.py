"""Outgoing-webhook signing secrets in Secrets Manager: one secret per endpoint, named
``{prefix}/{endpoint_id}``, its value the JSON ``{"current", "previous", "previous_expires_at"}``.

The stack's functions may touch only names under the prefix (template.yaml, WebhookEndpointsFunction).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from billing.adapters.aws.clients import secretsmanager_client
from billing.outgoing_webhooks.endpoints import SigningSecrets


def _is(exc: Exception, code: str) -> bool:
    response = getattr(exc, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == code


class SecretsManagerWebhookSecrets:
    def __init__(self, prefix: str, client: Any = None):
        self.prefix = prefix.rstrip("/")
        self.client = client or secretsmanager_client()

    def _name(self, endpoint_id: str) -> str:
        return f"{self.prefix}/{endpoint_id}"

    def put(self, endpoint_id: str, material: SigningSecrets) -> None:
        value = json.dumps(
            {
                "current": material.current,
                "previous": material.previous,
                "previous_expires_at": (
                    material.previous_expires_at.isoformat() if material.previous_expires_at else None
                ),
            }
        )
        try:
            self.client.put_secret_value(SecretId=self._name(endpoint_id), SecretString=value)
        except Exception as exc:
            if not _is(exc, "ResourceNotFoundException"):
                raise
            self.client.create_secret(
                Name=self._name(endpoint_id),
                SecretString=value,
                Description="Signing secret of an outgoing webhook endpoint (billing)",
            )

    def get(self, endpoint_id: str) -> SigningSecrets | None:
        try:
            value = self.client.get_secret_value(SecretId=self._name(endpoint_id))["SecretString"]
        except Exception as exc:
            if _is(exc, "ResourceNotFoundException"):
                return None
            raise
        data = json.loads(value)
        expires = data.get("previous_expires_at")
        return SigningSecrets(
            current=data["current"],
            previous=data.get("previous"),
            previous_expires_at=datetime.fromisoformat(expires) if expires else None,
        )

    def delete(self, endpoint_id: str) -> None:
        try:
            # No recovery window: a deleted endpoint's secret must stop signing at once, and ids are
            # never reused.
            self.client.delete_secret(SecretId=self._name(endpoint_id), ForceDeleteWithoutRecovery=True)
        except Exception as exc:
            if not _is(exc, "ResourceNotFoundException"):
                raise
