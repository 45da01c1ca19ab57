"""A local HTTP front for the API Gateway routes of template.yaml: each request becomes the REST
proxy event API Gateway would send, handed to the real handler of functions/<dir>/app.py.

Routes are read from the template (so they cannot drift). The API key check is emulated: routes
that require a key answer 403 ``{"message": "Forbidden"}`` without a known ``x-api-key``, as API
Gateway does; a known key reaches the handler as ``requestContext.identity.apiKeyId``. So are the
template's Lambda authorizers (REQUEST, identity in headers): without the identity headers a 401
``{"message": "Unauthorized"}``; otherwise the real authorizer function decides (its
``Unauthorized`` a 401, a Deny a 403) and its context reaches the handler as
``requestContext.authorizer``. The API keys it may name are this API's (value -> id), standing in
for the usage plan's keys in API Gateway.
Dev only (tests, ``billing portal serve``); a thread per connection, the handlers run one event at
a time in the process (``billing_local.runner.invoke``: Powertools shares the current event
between threads).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from billing.tenants.credentials import MappingKeys
from billing_local.runner import invoke
from billing_local.template import load_template, resources_of_type


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # "/v1/tenants/{tenant_id}/portal-link"
    function: str  # functions/<dir>
    api_key_required: bool
    pattern: re.Pattern[str]
    authorizer: Authorizer | None = None


@dataclass(frozen=True)
class Authorizer:
    function: str  # functions/<dir>
    identity_headers: tuple[str, ...]


def template_routes(function_dirs: Iterable[str] | None = None) -> list[Route]:
    """Every Api event of the template's functions (only those in ``function_dirs`` when given)."""
    template = load_template()
    default_required = (
        template["Resources"]
        .get("BillingApi", {})
        .get("Properties", {})
        .get("Auth", {})
        .get("ApiKeyRequired", False)
    )
    wanted = set(function_dirs) if function_dirs is not None else None
    functions = resources_of_type(template, "AWS::Serverless::Function")
    authorizers = {}
    declared = template["Resources"].get("BillingApi", {}).get("Properties", {}).get("Auth", {})
    for name, spec in declared.get("Authorizers", {}).items():
        target = spec["FunctionArn"]["Fn::GetAtt"][0]
        directory = functions[target]["Properties"]["CodeUri"].rstrip("/").rsplit("/", 1)[-1]
        headers = tuple(h.lower() for h in spec.get("Identity", {}).get("Headers", []))
        authorizers[name] = Authorizer(directory, headers)
    routes = []
    for resource in resources_of_type(template, "AWS::Serverless::Function").values():
        directory = resource["Properties"]["CodeUri"].rstrip("/").rsplit("/", 1)[-1]
        if wanted is not None and directory not in wanted:
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event.get("Type") != "Api":
                continue
            props = event["Properties"]
            path = props["Path"]
            regex = "^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"
            routes.append(
                Route(
                    method=props["Method"].upper(),
                    resource=path,
                    function=directory,
                    api_key_required=props.get("Auth", {}).get("ApiKeyRequired", default_required),
                    pattern=re.compile(regex),
                    authorizer=authorizers[props["Auth"]["Authorizer"]]
                    if props.get("Auth", {}).get("Authorizer")
                    else None,
                )
            )
    return routes


class LocalApi:
    def __init__(
        self,
        routes: list[Route],
        api_keys: dict[str, str],
        *,
        stage: str = "local",
        all_bodies_binary: bool = False,
    ):
        """``all_bodies_binary``: every body base64-encoded, as API Gateway sends them under the
        template's ``BinaryMediaTypes: */*``; otherwise only a body that is not UTF-8."""
        self.routes = routes
        self.api_keys = api_keys  # key value -> key id
        self.stage = stage
        self.all_bodies_binary = all_bodies_binary
        self.key_directory = MappingKeys(api_keys)

    def event(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        route: Route,
        params: dict[str, str],
        host: str,
    ) -> dict[str, Any]:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        key_id = self.api_keys.get(headers.get("x-api-key", ""))
        text_body: str | None = None
        encoded = False
        if body and not self.all_bodies_binary:
            try:
                text_body = body.decode()
            except UnicodeDecodeError:
                pass
        if body and text_body is None:
            text_body, encoded = base64.b64encode(body).decode(), True
        return {
            "resource": route.resource,
            "path": parts.path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.resource,
                "httpMethod": method,
                "path": f"/{self.stage}{parts.path}",
                "stage": self.stage,
                "domainName": host,
                "requestId": str(uuid.uuid4()),
                "identity": {
                    "apiKeyId": key_id,
                    "sourceIp": "127.0.0.1",
                    "userAgent": headers.get("user-agent"),
                },
            },
            "body": text_body,
            "isBase64Encoded": encoded,
        }

    def handle(
        self, method: str, url: str, headers: dict[str, str], body: bytes, host: str
    ) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(url).path
        matches = [(r, m) for r in self.routes if (m := r.pattern.match(path))]
        if not matches:
            return 404, {"Content-Type": "application/json"}, b'{"message": "Missing Authentication Token"}'
        chosen = [(r, m) for r, m in matches if r.method == method]
        if not chosen:
            return 403, {"Content-Type": "application/json"}, b'{"message": "Missing Authentication Token"}'
        route, match = chosen[0]
        if route.api_key_required and headers.get("x-api-key", "") not in self.api_keys:
            return 403, {"Content-Type": "application/json"}, b'{"message": "Forbidden"}'
        event = self.event(method, url, headers, body, route, match.groupdict(), host)
        if route.authorizer is not None:
            refused = self.authorize(route.authorizer, event, headers)
            if refused is not None:
                return refused
        response = invoke(route.function, event)
        out_headers = {k: v for k, v in (response.get("headers") or {}).items()}
        for k, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[k] = ", ".join(values)
        raw = response.get("body") or ""
        data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        return int(response["statusCode"]), out_headers, data

    def authorize(
        self, authorizer: Authorizer, event: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes] | None:
        """What API Gateway does before a route with a REQUEST authorizer: a refusal, or None with
        the authorizer's context put in ``event`` (as ``requestContext.authorizer``)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        unauthorized = 401, {"Content-Type": "application/json"}, b'{"message": "Unauthorized"}'
        if any(not lowered.get(h) for h in authorizer.identity_headers):
            return unauthorized
        context = event["requestContext"]
        request = {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:local/{self.stage}/"
            f"{event['httpMethod']}{event['resource']}",
            "resource": event["resource"],
            "path": event["path"],
            "httpMethod": event["httpMethod"],
            "headers": event["headers"],
            "multiValueHeaders": event["multiValueHeaders"],
            "queryStringParameters": event["queryStringParameters"],
            "multiValueQueryStringParameters": event["multiValueQueryStringParameters"],
            "pathParameters": event["pathParameters"],
            "stageVariables": None,
            "requestContext": {**context, "apiId": "local"},
        }
        try:
            policy = invoke(authorizer.function, request, prepare=self._wire_keys)
        except Exception as exc:  # noqa: BLE001 - API Gateway: "Unauthorized" is a 401, anything else a 500
            if str(exc) == "Unauthorized":
                return unauthorized
            return 500, {"Content-Type": "application/json"}, b'{"message": null}'
        statements = policy.get("policyDocument", {}).get("Statement", [])
        if not statements or any(s.get("Effect") != "Allow" for s in statements):
            return (
                403,
                {"Content-Type": "application/json"},
                b'{"message": "User is not authorized to access this resource with an explicit deny"}',
            )
        context["authorizer"] = {**policy.get("context", {}), "principalId": policy.get("principalId")}
        return None

    def _wire_keys(self) -> None:
        """The authorizer's key directory is this API's keys (API Gateway's usage plan keys)."""
        from billing.runtime import container

        if container.api_key_directory() is not self.key_directory:
            container.override(api_key_directory=self.key_directory)


LISTEN_BACKLOG = 128


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of clients connecting at once overflows the
    # kernel's queue of connections not yet accepted, and some of them are reset (half of 32
    # clients posting at once). Up to 128 wait here to be accepted (capped by the kernel's
    # net.core.somaxconn).
    request_queue_size = LISTEN_BACKLOG


def http_server(
    api: LocalApi, host: str, port: int, *, bound: socket.socket | None = None
) -> ThreadingHTTPServer:
    """An HTTP server on (host, port), or on the listening socket ``bound``, whose requests ``api``
    answers; the caller runs it."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            # Handlers read "Authorization" / "Content-Type" in API Gateway's spelling too.
            headers.update({k: v for k, v in self.headers.items()})
            try:
                status, out, data = api.handle(
                    self.command, self.path, headers, body, self.headers.get("Host", "")
                )
            except Exception as exc:  # a crash in a handler is a 502, as API Gateway reports it
                status, out, data = (
                    502,
                    {"Content-Type": "application/json"},
                    json.dumps({"message": str(exc)}).encode(),
                )
            try:
                self.send_response(status)
                for k, v in out.items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting (its timeout): nothing to answer

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            return

    if bound is None:
        return _Server((host, port), Handler)
    server = _Server(bound.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = bound
    server.server_address = bound.getsockname()[:2]
    return server


@contextmanager
def serving(api: LocalApi, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``api`` in a background thread for the block; yields the base URL (no stage prefix)."""
    server = http_server(api, host, port)
    thread = threading.Thread(target=server.serve_forever, name="local-api", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_forever(api: LocalApi, host: str, port: int) -> None:
    server = http_server(api, host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
