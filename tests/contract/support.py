"""What the contract tests share: openapi.yaml as schemathesis reads it (served by the WSGI app that
runs the real handlers), the checks every answer must pass, and one request built by hand."""

from __future__ import annotations

import base64
from typing import Any

import schemathesis
from schemathesis import checks

from billing_local.wsgi_api import wsgi_app

schema = schemathesis.openapi.from_wsgi("/openapi.yaml", wsgi_app)

not_a_server_error = checks.not_a_server_error
CHECKS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


# The peer formats' routes: credentials in Authorization (Bearer for OpenMeter and Lago, Basic for Segment).
PEER_ROUTES = ("/openmeter/", "/lago/", "/segment/")


def peer_credentials(key: str, route: str = "/openmeter/") -> str:
    if route.startswith("/segment/"):
        return "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return f"Bearer {key}"


def documented_answer(
    method: str,
    route: str,
    *,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    api_key: str | None = "platform-key",
    service_down: bool = False,
    **path_parameters: str,
) -> Any:
    """The answer to one request on ``route`` (as openapi.yaml spells it), after checking it is
    documented exactly as test_openapi checks generated ones: a documented status, the documented
    content type and schema, never a 5xx (unless ``service_down``: a test that made a backing
    service fail expects its documented 503). The response (``status_code``, ``json()``, ``text``)."""
    operation = schema[route][method]
    request: dict[str, Any] = {"body": body, "media_type": "application/json"} if body is not None else {}
    case = operation.Case(
        path_parameters=path_parameters,
        query=query,
        headers={**({"x-api-key": api_key} if api_key else {}), **(headers or {})},
        **request,
    )
    response = case.call()
    checks = [c for c in CHECKS if not (service_down and c is not_a_server_error)]
    case.validate_response(response, checks=checks)
    return response
