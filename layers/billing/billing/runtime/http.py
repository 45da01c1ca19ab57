"""HTTP mapping in one place: typed errors and results to API Gateway responses (Powertools)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from billing.kernel.errors import BillingError, ServiceUnavailable, is_backing_service_failure
from billing.kernel.request_body import parse_json, raw_body
from billing.runtime.observability import logger

if TYPE_CHECKING:
    from billing.tenants.access import Principal

JSON = "application/json"
HTML = "text/html; charset=utf-8"
# What every page of a signed link carries: never cached, never framed, no Referer (the token is in the URL).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def api_key_id(raw_event: Any) -> str | None:
    """The caller's API Gateway API key id, or None (no key, or an event without a
    ``requestContext`` - API Gateway always sends one, but a malformed event is a 401, not a 500)."""
    context = raw_event.get("requestContext") if isinstance(raw_event, dict) else None
    identity = context.get("identity") if isinstance(context, dict) else None
    key = identity.get("apiKeyId") if isinstance(identity, dict) else None
    return key if isinstance(key, str) and key else None


def caller(event: Any) -> Principal:
    """Who is calling (``event``: the resolver's current event, or its raw dict): the request's API
    key, platform or tenant; a 401 without one."""
    # Imported here: the tenant model and the settings (pydantic) load on the first request, never in
    # a handler's init phase, and the functions that never ask who is calling never load them.
    from billing.runtime.settings import get_settings
    from billing.tenants.access import principal_for

    raw_event = getattr(event, "raw_event", event)
    return principal_for(api_key_id(raw_event), get_settings().platform_api_key_ids)


def request_body(event: Any) -> Any:
    """The request's JSON body (``event`` as for ``caller``), an empty body read as ``{}``; a body
    that is not UTF-8, bad base64, too deep or not JSON is a 400 naming why, never a 500."""
    raw = raw_body(getattr(event, "raw_event", event))
    return parse_json(raw) if raw.strip() else {}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status, content_type=JSON, body=json.dumps(body, default=str), headers=headers or {}
    )


def error_response(error: BillingError) -> Response:
    return json_response(error.status, error.body(), error.headers)


def html_response(status: int, html: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status, content_type=HTML, body=html, headers={**PAGE_HEADERS, **(headers or {})}
    )


def error_page_response(error: BillingError) -> Response:
    from billing.portal.page import error_page

    return html_response(
        error.status,
        error_page(error.status, error.message),
        {**error.headers, "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"},
    )


class _InternalError(BillingError):
    status, code = 500, "internal_error"


def install_error_handlers(app: APIGatewayRestResolver, *, html_resources: tuple[str, ...] = ()) -> None:
    """Every BillingError becomes its status with a JSON body (an HTML page on ``html_resources``,
    the routes a browser opens, whatever the failure: a browser shows a page, not JSON); unknown
    routes a JSON 404; a failing backing service a 503 with Retry-After; anything else a 500 that
    leaks no internals (and is logged with its stack)."""

    def refusal(error: BillingError) -> Response:
        if app.current_event.resource in html_resources:
            return error_page_response(error)
        return error_response(error)

    @app.exception_handler(BillingError)
    def _billing_error(error: BillingError) -> Response:
        logger.info("request refused", extra={"status": error.status, "code": error.code})
        return refusal(error)

    @app.not_found
    def _not_found(_: NotFoundError) -> Response:
        return json_response(404, {"error": "not_found", "message": "no such route"})

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        if is_backing_service_failure(error):
            logger.exception("a backing service failed")
            return refusal(
                ServiceUnavailable(
                    "a backing service is unavailable; retry the request", headers={"Retry-After": "5"}
                )
            )
        logger.exception("unexpected error")
        return refusal(_InternalError("unexpected error; it has been logged"))
