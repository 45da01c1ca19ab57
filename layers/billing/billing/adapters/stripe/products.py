"""The catalog's products (``billing.catalog.product_sync.ProductDirectory``): ours are the ones
carrying ``metadata.billing_key``.

Products are listed (strongly consistent), never searched. A creation's or an update's idempotency
key is derived from the key or id and a digest of the name and description, so re-running a sync
with the same catalog sends the same keys and changes nothing twice, while a changed text is a new
request.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import stripe

from billing.adapters.stripe.client import StripeCalls, StripeRequest, metadata_of, segment
from billing.catalog.product_sync import ProductSpec, StripeProduct

if TYPE_CHECKING:
    from stripe.params import ProductCreateParams, ProductListParams, ProductUpdateParams


class Products(StripeCalls):
    # -- requests ---------------------------------------------------------------------------------
    def list_products_request(self) -> StripeRequest:
        """The first page of the products (``_each`` asks for the next ones)."""
        params: ProductListParams = {"limit": 100}
        return StripeRequest("get", "/v1/products", params)

    def product_request(self, spec: ProductSpec) -> StripeRequest:
        params: ProductCreateParams = {
            "name": spec.name,
            "description": spec.description,
            "metadata": {"billing_key": spec.key},
        }
        key = f"catalog:{spec.key}:{_digest(spec.name, spec.description)}"
        return StripeRequest("post", "/v1/products", params, key)

    def product_update_request(self, product_id: str, spec: ProductSpec) -> StripeRequest:
        params: ProductUpdateParams = {"name": spec.name, "description": spec.description}
        key = f"catalog-update:{product_id}:{_digest(spec.name, spec.description)}"
        return StripeRequest("post", f"/v1/products/{segment(product_id)}", params, key)

    # -- calls ------------------------------------------------------------------------------------
    def list_products(self) -> list[StripeProduct]:
        """Every product carrying our ``metadata.billing_key`` (list: strongly consistent)."""
        found: list[StripeProduct] = []
        for product in self._each(self.list_products_request(), stripe.Product):
            key = metadata_of(product.metadata).get("billing_key")
            if key:
                found.append(StripeProduct(str(product.id), key, str(product.name), product.description))
        return found

    def create_product(self, spec: ProductSpec) -> StripeProduct:
        product = self._send(self.product_request(spec), stripe.Product)
        return StripeProduct(str(product.id), spec.key, str(product.name), product.description)

    def update_product(self, product_id: str, spec: ProductSpec) -> StripeProduct:
        product = self._send(self.product_update_request(product_id, spec), stripe.Product)
        return StripeProduct(str(product.id), spec.key, str(product.name), product.description)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
