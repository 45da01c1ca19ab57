"""Billing Portal configurations (``billing.payments.payment_settings_page.PageDirectory``): ours is
the one carrying ``metadata.billing_key``, and the digest of what we sent in ``metadata.billing_digest``.

Configurations are listed (strongly consistent), never searched. A creation's or an update's
idempotency key carries the spec's digest, so a repeated sync sends the same key and a changed spec
is a new request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import stripe

from billing.adapters.stripe.client import StripeCalls, StripeRequest, metadata_of, segment
from billing.payments.payment_settings_page import PAGE_KEY, PageSpec, ProviderPage

if TYPE_CHECKING:
    from stripe.params.billing_portal import (
        ConfigurationCreateParams,
        ConfigurationCreateParamsFeatures,
        ConfigurationListParams,
        ConfigurationUpdateParams,
        ConfigurationUpdateParamsFeatures,
    )


class PortalConfigurations(StripeCalls):
    # -- requests ---------------------------------------------------------------------------------
    def list_page_configs_request(self) -> StripeRequest:
        """The first page of the configurations (``_each`` asks for the next ones)."""
        params: ConfigurationListParams = {"limit": 100}
        return StripeRequest("get", "/v1/billing_portal/configurations", params)

    def page_config_request(self, spec: PageSpec) -> StripeRequest:
        params: ConfigurationCreateParams = {
            "default_return_url": spec.default_return_url,
            "features": _features(spec),
            "metadata": {"billing_key": PAGE_KEY, "billing_digest": spec.digest()},
        }
        return StripeRequest("post", "/v1/billing_portal/configurations", params, f"portal:{spec.digest()}")

    def page_config_update_request(self, config_id: str, spec: PageSpec) -> StripeRequest:
        params: ConfigurationUpdateParams = {
            "active": True,
            "default_return_url": spec.default_return_url,
            "features": cast("ConfigurationUpdateParamsFeatures", _features(spec)),
            "metadata": {"billing_key": PAGE_KEY, "billing_digest": spec.digest()},
        }
        key = f"portal-update:{config_id}:{spec.digest()}"
        return StripeRequest("post", f"/v1/billing_portal/configurations/{segment(config_id)}", params, key)

    # -- calls ------------------------------------------------------------------------------------
    def list_page_configs(self) -> list[ProviderPage]:
        return [
            _page(config)
            for config in self._each(self.list_page_configs_request(), stripe.billing_portal.Configuration)
        ]

    def create_page_config(self, spec: PageSpec) -> ProviderPage:
        return _page(self._send(self.page_config_request(spec), stripe.billing_portal.Configuration))

    def update_page_config(self, config_id: str, spec: PageSpec) -> ProviderPage:
        request = self.page_config_update_request(config_id, spec)
        return _page(self._send(request, stripe.billing_portal.Configuration))


def _features(spec: PageSpec) -> ConfigurationCreateParamsFeatures:
    features: ConfigurationCreateParamsFeatures = {
        "invoice_history": {"enabled": spec.invoice_history},
        "payment_method_update": {"enabled": spec.payment_method_update},
        "customer_update": {"enabled": bool(spec.customer_updates)},
    }
    if spec.customer_updates:
        # Stripe refuses a name outside its list with a 400 naming the field: nothing to check twice.
        features["customer_update"]["allowed_updates"] = cast(Any, list(spec.customer_updates))
    return features


def _page(config: stripe.billing_portal.Configuration) -> ProviderPage:
    metadata = metadata_of(config.metadata)
    return ProviderPage(
        id=str(config.id),
        key=metadata.get("billing_key"),
        digest=metadata.get("billing_digest"),
        active=bool(config.active),
        is_default=bool(config.is_default),
    )
