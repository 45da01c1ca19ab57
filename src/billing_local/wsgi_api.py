"""The whole HTTP API as one WSGI app (for schemathesis, tests/contract): each request is handed to
``billing_local.http_api.LocalApi``, which builds the API Gateway REST event API Gateway would send
from the template's routes and calls the real handler. Two things are as the deployed API has them:
every body arrives base64-encoded (the template's ``BinaryMediaTypes: */*``), and a route that
requires a key answers API Gateway's own 403 without a known ``x-api-key`` (locally each key is its
own id: ``API_KEYS``). ``GET /openapi.yaml`` serves the document."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from billing_local.http_api import LocalApi, template_routes
from billing_local.template import PROJECT_ROOT

OPENAPI_PATH = PROJECT_ROOT / "openapi.yaml"
API_KEYS = {"platform-key": "platform-key", "acme-key": "acme-key", "stranger-key": "stranger-key"}


def make_app(api_keys: dict[str, str] | None = None) -> Callable[..., Iterable[bytes]]:
    keys = api_keys if api_keys is not None else API_KEYS
    api = LocalApi(template_routes(), keys, all_bodies_binary=True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        if method == "GET" and path == "/openapi.yaml":
            start_response("200 OK", [("Content-Type", "application/yaml")])
            return [OPENAPI_PATH.read_bytes()]
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        headers.update({k.title(): v for k, v in list(headers.items())})  # API Gateway's spelling too
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        query = environ.get("QUERY_STRING") or ""
        url = path + (f"?{query}" if query else "")
        status, out, data = api.handle(method, url, headers, body, environ.get("HTTP_HOST", "localhost"))
        start_response(f"{status} {HTTPStatus(status).phrase}", list(out.items()))
        return [data]

    return app


wsgi_app = make_app()
