"""``billing serve``: the whole HTTP API of template.yaml on localhost, on embedded defaults.

Every API Gateway route of the template is served by its real handler (``billing_local.http_api``:
real REST proxy events, the API key check emulated), over embedded ClickHouse at ``DIR/chdb`` and
in-process AWS (moto, resources from the template) with the Stripe double for Stripe. Beside the
template's routes, ``/_local/...`` is the operator's door (platform key only): tenant API keys,
the schedules, the fallback replay, and the CLI (``billing --local DIR ...`` runs its commands here,
inside the process that holds the state).

Invariants:
- routes come from template.yaml only; nothing here answers a ``/v1`` path itself;
- everything outlives a restart or a crash (``kill -9``): AWS state (tenants, API key ids, the
  ledger, quota counters, statements, credits, dunning state, queued messages, invoice files) is
  moto's, rebuilt at start from ``DIR/aws-journal.jsonl`` (``billing_local.journal``); the Stripe
  double's objects are in ``DIR/stripe.json``; ClickHouse rows in ``DIR/chdb``; the API keys in
  ``DIR/keys.json``; ``DIR/serve.json`` names the running server;
- one server per data directory (``DIR/serve.lock``), and the port is bound before the state is
  opened: either taken, the start is refused with a ``ServeError`` naming the cause and the flag;
- the fallback replay runs whenever the fallback queue holds messages, through the real
  FallbackReplayFunction handler, so events queued while ClickHouse was down land once it is back;
- every handler runs through ``runner.invoke``, one event at a time in the process, whatever the
  function: Powertools' resolvers share the event they resolve.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billing_local.aws import resource_environment
from billing_local.http_api import LocalApi, template_routes
from billing_local.runner import drain_queue, invoke
from billing_local.template import PROJECT_ROOT, load_template, resources_of_type

PLATFORM_KEY_ID = "local-platform-key"
STRIPE_STATE_NAME = "stripe.json"
ENV_LOCAL = "BILLING_LOCAL"  # DIR (or base URL) of a running `billing serve` for every CLI command


# ------------------------------------------------------------------------------------------ schedules
@dataclass(frozen=True)
class Schedule:
    function: str  # functions/<dir>
    expression: str  # "cron(15 * 1,2 * ? *)" or "rate(1 hour)"

    def due(self, now: datetime, last: datetime | None) -> bool:
        """Whether the schedule fires in the minute of ``now`` (rate: ``now - last >= rate``)."""
        rate = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", self.expression)
        if rate:
            unit = {"minute": 60, "hour": 3600, "day": 86400}[rate.group(2).rstrip("s")]
            return last is None or (now - last).total_seconds() >= int(rate.group(1)) * unit
        cron = re.fullmatch(r"cron\((.+)\)", self.expression)
        if not cron:
            return False
        minute, hour, dom, month, dow, *_ = cron.group(1).split()
        fields = ((minute, now.minute), (hour, now.hour), (dom, now.day), (month, now.month))
        if any(not _cron_match(spec, value) for spec, value in fields):
            return False
        if dow not in ("*", "?"):
            return False  # the template uses day-of-month schedules only
        return last is None or last.replace(second=0, microsecond=0) != now.replace(second=0, microsecond=0)


def _cron_match(spec: str, value: int) -> bool:
    if spec in ("*", "?"):
        return True
    for part in spec.split(","):
        if "-" in part:
            low, high = part.split("-")
            if int(low) <= value <= int(high):
                return True
        elif part.isdigit() and int(part) == value:
            return True
    return False


def template_schedules() -> list[Schedule]:
    template = load_template()
    found = []
    for resource in resources_of_type(template, "AWS::Serverless::Function").values():
        directory = resource["Properties"]["CodeUri"].rstrip("/").rsplit("/", 1)[-1]
        for event in resource["Properties"].get("Events", {}).values():
            if event.get("Type") == "Schedule":
                found.append(Schedule(directory, event["Properties"]["Schedule"]))
    return found


def scheduled_event(function: str, now: datetime, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """The EventBridge "Scheduled Event" a schedule rule sends."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/local-{function}"],
        "detail": detail or {},
    }


# ------------------------------------------------------------------------------------------ the server
@dataclass
class LocalServer:
    """The state of one ``billing serve``: keys, resources, background loops; ``cli`` runs one
    ``billing`` command line in this process and returns its exit code (the CLI passes it in, since
    the CLI imports the local runtime and not the reverse)."""

    data_dir: Path
    platform_key: str
    cli: Callable[[list[str]], int]
    schedules: bool = False
    replay_interval_s: float = 1.0
    keys: dict[str, str] = field(default_factory=dict)  # key value -> key id
    resources: dict[str, Any] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)
    cli_lock: threading.Lock = field(default_factory=threading.Lock)
    last_run: dict[Schedule, datetime] = field(default_factory=dict)
    replayed: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)
    faults_lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self, method: str, path: str) -> dict[str, Any] | None:
        """The next injected answer for this route (``POST /_local/faults``), used up once taken."""
        with self.faults_lock:
            for fault in self.faults:
                if fault["path"] == path and fault["method"] == method:
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        self.faults.remove(fault)
                    return dict(fault)
        return None

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.json"

    # -- keys ------------------------------------------------------------------------------------
    def load_keys(self) -> None:
        stored = json.loads(self.keys_path.read_text()) if self.keys_path.exists() else {}
        self.keys = {k: v for k, v in stored.items() if v != PLATFORM_KEY_ID}
        self.keys[self.platform_key] = PLATFORM_KEY_ID
        self._save_keys()

    def _save_keys(self) -> None:
        tmp = self.keys_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.keys, indent=1))
        os.replace(tmp, self.keys_path)

    def create_tenant_key(self, tenant_id: str) -> dict[str, str]:
        """A new API key for one tenant: its id is added to the tenant's ``api_key_ids`` (what API
        Gateway's key id is to ingest), its value returned once."""
        from billing.runtime import container
        from billing.tenants.tenant import unknown_tenant

        tenant = container.tenants().get(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        key_id = f"key-{tenant_id}-{secrets.token_hex(4)}"
        value = secrets.token_urlsafe(24)
        container.tenants().save(tenant.model_copy(update={"api_key_ids": [*tenant.api_key_ids, key_id]}))
        self.keys[value] = key_id
        self._save_keys()
        return {"tenant_id": tenant_id, "api_key": value, "api_key_id": key_id}

    # -- background work -------------------------------------------------------------------------
    def replay_fallback(self) -> tuple[int, int]:
        """Deliver the fallback queue to FallbackReplayFunction (what its SQS trigger does)."""
        from billing.runtime import container

        url = container.settings().fallback_queue_url
        processed, failed = drain_queue(url, "fallback_replay") if url else (0, 0)
        self.replayed += processed
        return processed, failed

    def deliver_webhooks(self) -> tuple[int, int]:
        """Deliver the outgoing webhook queue to WebhookDeliveryFunction (what its SQS trigger
        does): each message's attempt, a failed one back in the queue after its backoff."""
        from billing.runtime import container

        url = container.settings().webhook_delivery_queue_url
        return drain_queue(url, "webhook_delivery") if url else (0, 0)

    def run_schedule(self, function: str, detail: dict[str, Any] | None = None) -> Any:
        event = scheduled_event(function, datetime.now(UTC), detail)
        return invoke(function, event)

    def background(self, log: Callable[[str], None]) -> None:
        """Replay the fallback queue when it holds messages, attempt queued webhooks; run due
        schedules (``--schedules``)."""
        schedules = template_schedules() if self.schedules else []
        while not self.stop_event.wait(self.replay_interval_s):
            try:
                processed, failed = self.replay_fallback()
                if processed:
                    log(f"fallback replay: {processed} block(s) stored in ClickHouse")
            except Exception as exc:  # noqa: BLE001 - ClickHouse still down: the next round retries
                log(f"fallback replay failed, retrying: {exc}")
            try:
                attempted, _ = self.deliver_webhooks()
                if attempted:
                    log(f"webhooks: {attempted} attempt(s) made")
            except Exception as exc:  # noqa: BLE001 - the queue hands the messages back next round
                log(f"webhook delivery failed, retrying: {exc}")
            now = datetime.now(UTC)
            for schedule in schedules:
                if schedule.due(now, self.last_run.get(schedule)):
                    self.last_run[schedule] = now
                    try:
                        log(f"schedule {schedule.function}: {self.run_schedule(schedule.function)}")
                    except Exception as exc:  # noqa: BLE001 - EventBridge retries; so does the next tick
                        log(f"schedule {schedule.function} failed: {exc}")

    # -- the operator door -----------------------------------------------------------------------
    def run_cli(self, argv: list[str]) -> dict[str, Any]:
        """Run one ``billing`` command in this process (the one holding the state); one at a time."""
        out, err = io.StringIO(), io.StringIO()
        with self.cli_lock, redirect_stdout(out), redirect_stderr(err):
            code = self.cli(argv)
        return {"exit_code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}

    def admin(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        from billing.kernel.errors import BillingError

        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "invalid_request", "message": "body is not JSON"}
        if not isinstance(data, dict):
            return 400, {"error": "invalid_request", "message": "body must be a JSON object"}
        try:
            if method == "POST" and path == "/_local/keys":
                tenant_id = data.get("tenant_id")
                if not isinstance(tenant_id, str) or not tenant_id:
                    return 400, {
                        "error": "invalid_request",
                        "message": "tenant_id is required",
                        "details": [{"field": "tenant_id", "reason": "required"}],
                    }
                return 201, self.create_tenant_key(tenant_id)
            if method == "POST" and path == "/_local/faults":
                status = data.get("status")
                if not isinstance(status, int) or not 400 <= status <= 599:
                    return 400, {
                        "error": "invalid_request",
                        "message": "status must be an HTTP error status",
                        "details": [{"field": "status", "reason": "an integer 400-599"}],
                    }
                fault = {
                    "method": str(data.get("method", "POST")).upper(),
                    "path": str(data.get("path", "/v1/events")),
                    "status": status,
                    "times": max(1, int(data.get("times", 1))),
                    "retry_after": data.get("retry_after"),
                    "apply": bool(data.get("apply", False)),
                }
                with self.faults_lock:
                    self.faults.append(fault)
                return 201, fault
            if method == "POST" and path == "/_local/replay":
                processed, failed = self.replay_fallback()
                return 200, {"processed": processed, "failed": failed}
            match = re.fullmatch(r"/_local/schedules/([a-z_]+)", path)
            if method == "POST" and match:
                names = {s.function for s in template_schedules()}
                if match.group(1) not in names:
                    return 404, {
                        "error": "not_found",
                        "message": f"no schedule {match.group(1)!r}: {sorted(names)}",
                    }
                return 200, {"result": self.run_schedule(match.group(1), data.get("detail"))}
            if method == "POST" and path == "/_local/cli":
                argv = data.get("argv")
                if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                    return 400, {"error": "invalid_request", "message": "argv must be a list of strings"}
                return 200, self.run_cli(argv)
            if method == "GET" and path == "/_local/state":
                return 200, {"replayed_blocks": self.replayed, "schedules": self.schedules}
        except BillingError as error:
            return error.status, error.body()
        return 404, {"error": "not_found", "message": f"no local route {method} {path}"}


class ServeApi(LocalApi):
    """The template's routes plus ``/_local/*`` (platform key) and ``/openapi.yaml`` (if present)."""

    def __init__(self, server: LocalServer):
        super().__init__(template_routes(), server.keys)
        self.server = server

    def handle(
        self, method: str, url: str, headers: dict[str, str], body: bytes, host: str
    ) -> tuple[int, dict[str, str], bytes]:
        path = url.split("?", 1)[0]
        if path.startswith("/_local/"):
            if headers.get("x-api-key") != self.server.platform_key:
                return 403, {"Content-Type": "application/json"}, b'{"message": "Forbidden"}'
            status, data = self.server.admin(method, path, body)
            return status, {"Content-Type": "application/json"}, json.dumps(data, default=str).encode()
        fault = self.server.next_fault(method, path)
        if fault is not None:
            # What API Gateway answers when throttling (429) or when the integration fails (503);
            # ``apply``: the request reaches the handler, then its answer is lost.
            if fault["apply"]:
                super().handle(method, url, headers, body, host)
            out = {"Content-Type": "application/json"}
            if fault["retry_after"] is not None:
                out["Retry-After"] = str(fault["retry_after"])
            message = {429: "Too Many Requests", 503: "Service Unavailable"}.get(
                fault["status"], "injected fault"
            )
            return fault["status"], out, json.dumps({"message": message}).encode()
        if method == "GET" and path in ("/openapi.yaml", "/openapi.json"):
            spec = PROJECT_ROOT / path.lstrip("/")
            if spec.exists():
                kind = "application/yaml" if path.endswith(".yaml") else "application/json"
                return 200, {"Content-Type": kind}, spec.read_bytes()
        return super().handle(method, url, headers, body, host)


def configure(data_dir: Path, resources: dict[str, Any]) -> None:
    """Point the settings at the embedded ClickHouse of ``data_dir`` and the moto resources."""
    os.environ.pop("CLICKHOUSE_URL_SECRET", None)
    os.environ.update(
        {
            "CLICKHOUSE_URL": f"chdb://{(data_dir / 'chdb').resolve()}",
            "CLICKHOUSE_DATABASE": os.environ.get("CLICKHOUSE_DATABASE") or "billing",
            **resource_environment(resources),
            "PLATFORM_API_KEY_IDS": PLATFORM_KEY_ID,
        }
    )


def serve(
    *,
    host: str,
    port: int,
    data_dir: Path,
    api_key: str | None,
    schedules: bool,
    print_line: Callable[[str], None],
    cli: Callable[[list[str]], int],
    quiet_handlers: bool = True,
) -> None:
    """Run until SIGTERM/SIGINT: set up, print the base URL and key, serve a thread per connection;
    ``cli`` runs the command lines ``/_local/cli`` receives (``LocalServer.cli``). Raises
    ``ServeError`` (before opening any state) when another server uses ``data_dir`` or the port is
    taken."""
    from billing_local.serve_guard import bind_port, lock_data_dir

    data_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_data_dir(data_dir)
    try:
        bound = bind_port(host, port)
        try:
            _serve(
                bound=bound,
                host=host,
                data_dir=data_dir,
                api_key=api_key,
                schedules=schedules,
                print_line=print_line,
                cli=cli,
                quiet_handlers=quiet_handlers,
            )
        finally:
            bound.close()
    finally:
        os.close(lock)


def _serve(
    *,
    bound: socket.socket,
    host: str,
    data_dir: Path,
    api_key: str | None,
    schedules: bool,
    print_line: Callable[[str], None],
    cli: Callable[[list[str]], int],
    quiet_handlers: bool,
) -> None:
    import logging
    import warnings

    from billing_local.aws import local_aws
    from billing_local.http_api import http_server
    from billing_local.journal import JOURNAL_NAME, AwsJournal

    if quiet_handlers:
        # The handlers' JSON logs and EMF metrics would bury the server's own lines.
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        from billing.runtime.observability import logger

        logger.setLevel(logging.ERROR)
    server = LocalServer(
        data_dir=data_dir, platform_key=api_key or secrets.token_urlsafe(24), cli=cli, schedules=schedules
    )
    # AWS is the in-process moto and nothing else: an endpoint left in the shell (the scale model's
    # moto server) would take the calls past the journal.
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    journal = AwsJournal(data_dir / JOURNAL_NAME)
    with local_aws(prefix="serve", journal=journal) as resources:
        from aws_lambda_powertools.utilities import parameters

        from billing.runtime import container
        from billing_local.stripe_double import StripeDouble, put_secret

        configure(data_dir, resources)
        container.reset()
        container.usage_store().migrate()
        double = StripeDouble(state_path=data_dir / STRIPE_STATE_NAME).start()
        os.environ["STRIPE_API_BASE"] = double.api_base
        container.reset()
        put_secret(container.settings().stripe_secret_name)
        parameters.clear_caches()
        # The operator's setup (`billing stripe sync-catalog`): Stripe makes no portal session
        # without a saved configuration.
        from billing.payments.payment_settings_page import PageSpec, sync_page

        spec = PageSpec(default_return_url=container.settings().billing_portal_return_url)
        sync_page(spec, container.stripe_gateway(), container.payment_settings_page_id())
        server.load_keys()
        api = ServeApi(server)
        http = http_server(api, host, 0, bound=bound)
        http.daemon_threads = True
        base = f"http://{host}:{http.server_address[1]}"
        os.environ.setdefault("PORTAL_BASE_URL", base)
        container.reset()
        state = {"url": base, "api_key": server.platform_key, "pid": os.getpid()}
        (data_dir / "serve.json").write_text(json.dumps(state))
        loop = threading.Thread(target=server.background, args=(print_line,), name="background", daemon=True)
        loop.start()

        def stop(signum: int, _frame: Any) -> None:
            server.stop_event.set()
            threading.Thread(target=http.shutdown, daemon=True).start()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        report = journal.report
        if report.calls:
            print_line(
                f"restored {report.calls} AWS calls from {journal.path} in {report.seconds:.1f} s"
                + (f"; {report.diverged} answered differently" if report.diverged else "")
            )
        print_line(f"billing serve: {base}")
        print_line(f"platform key: {server.platform_key}")
        print_line(
            f"{len(api.routes)} routes from template.yaml; data in {data_dir}"
            + ("; schedules on" if schedules else "")
        )
        try:
            http.serve_forever(poll_interval=0.2)
        finally:
            server.stop_event.set()
            http.server_close()
            loop.join(timeout=5)
            double.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                (data_dir / "serve.json").unlink()
            except FileNotFoundError:
                pass
            container.reset()
            print_line("billing serve: stopped")
