"""Receipts and the reconcile: what became of every event id, through every path an event takes
(stored, queued in the fallback and replayed, refused, billed at the close, late after it), and the
per-month counts accepted = stored = billed, naming the ids that differ."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from billing.kernel.periods import Month
from billing.runtime import container
from billing_cli import run
from billing_cli.errors import ExitCode
from billing_local.faults import OutageStore
from billing_local.http_api import LocalApi, serving, template_routes
from billing_local.runner import drain_queue, load_module, response_headers
from tests.conftest import api_event
from tests.metering.conftest import make_tenant, usage

NOV, DEC = Month(2025, 11), Month(2025, 12)
# Early January 2026: inside the ledger's retention of November's claims (70 days after the month).
TODAY = datetime(2026, 1, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def today(env):
    container.override(clock=lambda: TODAY)
    yield
    container.override(clock=None)


@pytest.fixture(scope="module")
def status_app():
    return load_module("tenant_status")


@pytest.fixture
def call(status_app, lambda_context):
    """Call a route of the tenant reads function; returns (status, json body)."""

    def _call(
        method: str,
        resource: str,
        *,
        path_parameters: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        body: Any = "",
        api_key_id: str | None = "platform-key",
    ) -> tuple[int, dict]:
        path = resource
        for name, value in (path_parameters or {}).items():
            path = path.replace("{" + name + "}", value)
        event = api_event(body, method=method, path=path, api_key_id=api_key_id, query=query)
        event["resource"] = resource
        event["pathParameters"] = path_parameters
        response = status_app.handler(event, lambda_context)
        assert "no-store" in response_headers(response).get("Cache-Control", "no-store")
        return response["statusCode"], json.loads(response["body"])

    return _call


@pytest.fixture
def receipt(call):
    def _receipt(event_id: str, tenant_id: str = "acme-corp", **kw: Any) -> dict:
        status, body = call(
            "GET",
            "/v1/events/{event_id}/receipt",
            path_parameters={"event_id": event_id},
            query={"tenant_id": tenant_id},
            **kw,
        )
        assert status == 200, body
        return body

    return _receipt


@pytest.fixture
def reconcile(call):
    def _reconcile(month: Month = NOV, tenant_id: str = "acme-corp") -> dict:
        status, body = call(
            "GET",
            "/v1/tenants/{tenant_id}/reconcile",
            path_parameters={"tenant_id": tenant_id},
            query={"month": str(month)},
        )
        assert status == 200, body
        return body

    return _reconcile


def starter() -> None:
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z", api_key_ids=["acme-key"])


def replay(env) -> int:
    processed, failed = drain_queue(env.settings.fallback_queue_url, "fallback_replay")
    assert failed == 0
    return processed


def test_a_stored_event_is_billed_on_its_months_statement_after_the_close(env, post, receipt, reconcile):
    # Given a tenant with two November events stored
    starter()
    assert post({"events": [usage("e-1"), usage("e-2", ts="2025-11-04T12:00:00Z")]})[0] == 202
    # When its receipt is read before the close
    before = receipt("e-1")
    # Then it is accepted and stored, to be billed on November's statement
    assert before["status"] == "stored" and before["accepted"] is True
    assert before["stored"]["timestamp"] == "2025-11-03T12:00:00Z" and before["billed"] is None
    assert "billed on the statement of 2025-11 when that month closes" in before["message"]
    # And the month's counts agree (nothing billed yet)
    open_month = reconcile()
    assert (open_month["accepted"], open_month["stored"], open_month["billed"]) == (2, 2, None)
    assert open_month["agree"] is True
    # When November is closed
    container.billing_cycle().close(NOV)
    # Then the receipt names the statement and its usage lines
    after = receipt("e-1")
    assert after["status"] == "billed"
    assert after["billed"]["statement_id"] == "acme-corp:2025-11" and after["billed"]["as"] == "usage"
    assert after["billed"]["lines"] and after["billed"]["plans_digest"]
    # And accepted = stored = billed, with nothing to name
    closed = reconcile()
    assert (closed["accepted"], closed["stored"], closed["billed"], closed["billed_on_time"]) == (2, 2, 2, 2)
    assert closed["agree"] is True and closed["statement_id"] == "acme-corp:2025-11"
    assert closed["accepted_not_stored"] == [] and closed["stored_not_accepted"] == []


def test_a_queued_event_is_named_queued_until_the_replay_stores_it(env, post, receipt, reconcile):
    # Given ClickHouse refuses inserts when a batch arrives
    starter()
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "fail")
    status, body, _ = post({"events": [usage("q-1"), usage("q-2", ts="2025-11-03T12:00:01Z")]})
    assert status == 202 and body["queued"] is True
    # When its receipt is read
    queued = receipt("q-1")
    # Then it is accepted and queued in the fallback, not stored
    assert queued["status"] == "queued" and queued["queued"] is True and queued["accepted"] is True
    assert queued["stored"] is None
    # And the reconcile disagrees, naming both ids as queued, and says the queue is not drained
    pending = reconcile()
    assert pending["agree"] is False and pending["fallback_queue_depth"] == 1
    assert (pending["accepted"], pending["stored"]) == (2, 0)
    assert [(d["event_id"], d["queued"]) for d in pending["accepted_not_stored"]] == [
        ("q-1", True),
        ("q-2", True),
    ]
    # When the replay drains the queue
    assert replay(env) == 1
    # Then the event is stored and the counts agree
    assert receipt("q-1")["status"] == "stored"
    drained = reconcile()
    assert drained["agree"] is True and (drained["accepted"], drained["stored"]) == (2, 2)


def test_a_refused_batch_leaves_no_record_and_its_receipt_says_so(env, post, receipt, reconcile):
    # Given a batch one of whose events is invalid (a 400: nothing of it is stored)
    starter()
    status, _, _ = post({"events": [usage("r-1"), usage("r-2", input_tokens=-1)]})
    assert status == 400
    # When the receipt of its valid event is read
    refused = receipt("r-1")
    # Then there is no record of it: refusals are never recorded
    assert refused["status"] == "unknown" and refused["accepted"] is False
    assert refused["batch_id"] is None and refused["stored"] is None
    assert "a refused event is not recorded" in refused["message"]
    # And the month has nothing accepted or stored
    month = reconcile()
    assert (month["accepted"], month["stored"], month["agree"]) == (0, 0, True)


def test_a_query_refused_for_quota_is_unknown_too(env, post, receipt):
    # Given a tenant whose quota of 1 query is used
    make_tenant(quota=1)
    assert post({"events": [usage("ok-1")]})[0] == 202
    # When a second query is refused (429)
    assert post({"events": [usage("over-1", ts="2025-11-03T12:00:01Z")]})[0] == 429
    # Then its receipt is unknown, the first one's stored
    assert receipt("over-1")["status"] == "unknown"
    assert receipt("ok-1")["status"] == "stored"


def test_a_late_event_is_billed_as_an_adjustment_on_the_next_statement(env, post, receipt, reconcile):
    # Given a November event queued while ClickHouse was down, its message taken off the queue
    # before November closed (as a redrive from the dead-letter queue would bring it back later)
    starter()
    assert post({"events": [usage("n-1")]})[0] == 202
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "fail")
    assert post({"events": [usage("late-1", ts="2025-11-29T00:00:00Z")]})[1]["queued"] is True
    sqs = boto3.client("sqs")
    url = env.settings.fallback_queue_url
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    container.billing_cycle().close(NOV)
    # When the message is replayed after the close
    sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
    assert replay(env) == 1
    # Then the late event is stored, to be billed as an adjustment on December's statement
    late = receipt("late-1")
    assert late["status"] == "stored" and "adjustment on the statement of 2025-12" in late["message"]
    # And November's reconcile counts it as stored late: its statement billed the one on time
    november = reconcile()
    assert (november["accepted"], november["stored"], november["billed"]) == (2, 2, 1)
    assert (november["billed_on_time"], november["late"], november["agree"]) == (1, 1, True)
    # When December is closed
    container.billing_cycle().close(DEC)
    # Then the receipt names December's statement and its adjustment lines for November
    billed = receipt("late-1")
    assert billed["status"] == "billed" and billed["billed"]["as"] == "adjustment"
    assert (
        billed["billed"]["statement_id"] == "acme-corp:2025-12"
        and billed["billed"]["event_month"] == "2025-11"
    )
    assert billed["billed"]["lines"] and all(
        line.startswith("adj:2025-11:") for line in billed["billed"]["lines"]
    )
    # And the event billed on time still names November's statement
    assert receipt("n-1")["billed"]["statement_id"] == "acme-corp:2025-11"


def test_the_reconcile_names_an_accepted_event_the_store_lost(env, post, receipt, reconcile):
    # Given three stored November events, one of whose rows is then deleted from ClickHouse
    starter()
    events = [usage(f"m-{i}", ts=f"2025-11-0{i + 1}T12:00:00Z") for i in range(3)]
    assert post({"events": events})[0] == 202
    env.store.client.command(
        "ALTER TABLE usage_events DELETE WHERE event_id = 'm-1'", settings={"mutations_sync": 2}
    )
    # When the month is reconciled
    result = reconcile()
    # Then the counts disagree and the lost id is named (accepted, not stored, nothing queued)
    assert result["agree"] is False and (result["accepted"], result["stored"]) == (3, 2)
    assert [(d["event_id"], d["queued"]) for d in result["accepted_not_stored"]] == [("m-1", False)]
    assert result["accepted_not_stored_count"] == 1 and result["stored_not_accepted"] == []
    # And its receipt says it is missing
    assert receipt("m-1")["status"] == "missing"


def test_a_row_the_ledger_never_accepted_is_named_the_other_way(env, post, reconcile):
    # Given a stored event, and a row written to ClickHouse behind ingest's back
    starter()
    assert post({"events": [usage("s-1")]})[0] == 202
    stray = container.usage_store().query("SELECT * FROM usage_events LIMIT 0")  # schema only
    assert stray == []
    row = next(iter(_rows_like(env, "s-1", "stray-1")))
    env.store.insert_events([row])
    # When the month is reconciled
    result = reconcile()
    # Then the stray row is named as stored but not accepted
    assert result["agree"] is False and result["stored_not_accepted"] == ["stray-1"]
    assert (result["accepted"], result["stored"]) == (1, 2)


def _rows_like(env, event_id: str, new_id: str):
    from billing.metering.events import StoredEvent

    columns = [c for c in StoredEvent._fields if c != "properties"]
    rows = env.store.query(
        f"SELECT {', '.join(columns)} FROM usage_events WHERE event_id = {{e:String}}", {"e": event_id}
    )
    for values in rows:
        row = dict(zip(columns, values, strict=True))
        row["event_id"] = new_id
        yield StoredEvent(**row)


def test_the_batch_form_answers_each_id_in_order(env, post, call):
    # Given one stored event
    starter()
    assert post({"events": [usage("b-1")]})[0] == 202
    # When receipts of it, an unknown id and itself again are asked in one request
    status, body = call(
        "POST", "/v1/receipts", body={"tenant_id": "acme-corp", "event_ids": ["b-1", "nope", "b-1"]}
    )
    # Then each id is answered once, in the order asked
    assert status == 200
    assert [(r["event_id"], r["status"]) for r in body["receipts"]] == [
        ("b-1", "stored"),
        ("nope", "unknown"),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant_id": "acme-corp", "event_ids": []}, "event_ids"),
        ({"tenant_id": "acme-corp", "event_ids": [f"e-{i}" for i in range(101)]}, "event_ids"),
        ({"tenant_id": "acme-corp", "event_ids": ["bad id"]}, "event_ids.0"),
        ({"event_ids": ["e-1"]}, "tenant_id"),
        ({"tenant_id": "acme-corp", "event_ids": ["e-1"], "extra": 1}, "extra"),
    ],
)
def test_a_bad_batch_is_a_400_naming_the_field(env, call, body, field):
    starter()
    status, answer = call("POST", "/v1/receipts", body=body)
    assert status == 400 and field in {d["field"] for d in answer["details"]}


def test_keys_read_only_their_own_tenants_receipts(env, post, call):
    # Given two tenants, acme with its own key
    starter()
    make_tenant("globex", plan="starter", plan_from="2025-10-01T00:00:00Z", api_key_ids=["globex-key"])
    assert post({"events": [usage("k-1")]})[0] == 202
    path = {"event_id": "k-1"}
    route = "/v1/events/{event_id}/receipt"
    # Then acme's key reads acme's receipt, globex's key gets a 403, as for a tenant that does not exist
    assert (
        call("GET", route, path_parameters=path, query={"tenant_id": "acme-corp"}, api_key_id="acme-key")[0]
        == 200
    )
    assert (
        call("GET", route, path_parameters=path, query={"tenant_id": "acme-corp"}, api_key_id="globex-key")[0]
        == 403
    )
    assert (
        call("GET", route, path_parameters=path, query={"tenant_id": "ghost"}, api_key_id="globex-key")[0]
        == 403
    )
    # And the platform key must name the tenant (400), an unknown one is a 404, no key a 401
    status, body = call("GET", route, path_parameters=path)
    assert status == 400 and body["details"][0]["field"] == "tenant_id"
    assert call("GET", route, path_parameters=path, query={"tenant_id": "ghost"})[0] == 404
    assert (
        call("GET", route, path_parameters=path, query={"tenant_id": "acme-corp"}, api_key_id=None)[0] == 401
    )
    # And the reconcile needs a month (400) and keeps to the same keys
    reconcile_route = "/v1/tenants/{tenant_id}/reconcile"
    assert call("GET", reconcile_route, path_parameters={"tenant_id": "acme-corp"})[0] == 400
    assert (
        call("GET", reconcile_route, path_parameters={"tenant_id": "acme-corp"}, query={"month": "2025-13"})[
            0
        ]
        == 400
    )
    status, _ = call(
        "GET",
        reconcile_route,
        path_parameters={"tenant_id": "acme-corp"},
        query={"month": "2025-11"},
        api_key_id="globex-key",
    )
    assert status == 403


def test_the_served_api_answers_receipts_and_the_reconcile_from_the_template_routes(env):
    # Given ingest and the tenant reads served from template.yaml's routes, as `billing serve` does
    starter()
    api = LocalApi(template_routes(["ingest", "tenant_status"]), {"secret": "platform-key"})
    with serving(api) as url:

        def send(method: str, path: str, body: Any = None) -> tuple[int, dict]:
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(
                url + path,
                data=data,
                method=method,
                headers={"x-api-key": "secret", "content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        # When an event is sent, then its receipt, the batch form and the month's reconcile are asked
        assert send("POST", "/v1/events", {"events": [usage("h-1")]})[0] == 202
        one = send("GET", "/v1/events/h-1/receipt?tenant_id=acme-corp")
        batch = send("POST", "/v1/receipts", {"tenant_id": "acme-corp", "event_ids": ["h-1", "h-2"]})
        month = send("GET", "/v1/tenants/acme-corp/reconcile?month=2025-11")
    # Then each answers from the same records
    assert one[0] == 200 and one[1]["status"] == "stored"
    assert [r["status"] for r in batch[1]["receipts"]] == ["stored", "unknown"]
    assert month[0] == 200 and (month[1]["accepted"], month[1]["stored"], month[1]["agree"]) == (1, 1, True)


def test_the_reconcile_command_names_the_lost_id_and_exits_5(env, post, capsys):
    # Given two stored events, one of whose rows is then deleted from ClickHouse
    starter()
    assert post({"events": [usage("c-1"), usage("c-2", ts="2025-11-05T00:00:00Z")]})[0] == 202
    env.store.client.command(
        "ALTER TABLE usage_events DELETE WHERE event_id = 'c-2'", settings={"mutations_sync": 2}
    )
    capsys.readouterr()  # the ingest handler's metrics line
    # When `billing reconcile` runs
    code = run(["reconcile", "--tenant", "acme-corp", "--month", "2025-11", "--json"], allow_forward=False)
    # Then it exits 5 and names the id
    document = json.loads(capsys.readouterr().out)
    assert code == ExitCode.PARTIAL and document["agree"] is False
    assert [d["event_id"] for d in document["accepted_not_stored"]] == ["c-2"]
    # And the table form names it too, as do the receipts
    code = run(["reconcile", "--tenant", "acme-corp", "--month", "2025-11"], allow_forward=False)
    table = capsys.readouterr().out
    assert code == ExitCode.PARTIAL and "c-2" in table and "accepted, not stored" in table
    assert run(["events", "receipt", "c-1", "c-2", "--tenant", "acme-corp"], allow_forward=False) == 0
    receipts = capsys.readouterr().out
    assert "stored" in receipts and "missing" in receipts


def test_a_month_whose_claims_expired_compares_stored_and_billed_only(env, post, reconcile):
    # Given a November event stored and November closed
    starter()
    assert post({"events": [usage("x-1")]})[0] == 202
    container.billing_cycle().close(NOV)
    # When the reconcile runs after the ledger's retention of November's claims
    container.override(clock=lambda: NOV.end + timedelta(days=env.settings.dedup_retention_days + 1))
    result = reconcile()
    # Then accepted is unknown (null), stored and billed still agree, and a note says why
    assert result["accepted"] is None and (result["stored"], result["billed"]) == (1, 1)
    assert result["agree"] is True and "have expired" in result["notes"][0]


def test_one_batch_of_two_tenants_and_two_months_is_indexed_per_tenant_and_month(env, post, reconcile):
    # Given a platform batch carrying acme's November and December events and globex's November one
    starter()
    make_tenant("globex", plan="starter", plan_from="2025-10-01T00:00:00Z")
    events = [
        usage("t-1"),
        usage("t-2", ts="2025-12-02T00:00:00Z"),
        usage("t-3", tenant_id="globex", ts="2025-11-05T00:00:00Z"),
    ]
    assert post({"events": events})[0] == 202
    # When each tenant's months are reconciled
    acme_nov, acme_dec, globex_nov = reconcile(NOV), reconcile(DEC), reconcile(NOV, "globex")
    # Then each counts only its own events, and all agree
    assert [(r["accepted"], r["stored"], r["agree"]) for r in (acme_nov, acme_dec, globex_nov)] == [
        (1, 1, True),
        (1, 1, True),
        (1, 1, True),
    ]


def test_a_503_commits_and_indexes_only_the_events_it_kept(env, post, receipt, reconcile, monkeypatch):
    # Given blocks of about 3 events, ClickHouse taking the first block only, and SQS refusing messages
    from billing.metering import fallback
    from tests.metering.test_outages_and_bounds import FlakyQueue

    monkeypatch.setattr(fallback, "MAX_MESSAGE_BYTES", 800)
    starter()
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "ok" if n == 0 else "fail")
    service.fallback = FlakyQueue(container.fallback_queue(), lambda n: True)
    events = [usage(f"p-{i}", ts=f"2025-11-03T12:00:{i:02d}Z") for i in range(9)]
    # When the batch arrives
    status, answer, _ = post({"events": events})
    # Then the 503 keeps the first block: those are accepted and stored, the others unknown (given back)
    assert status == 503 and answer["kept"] and answer["unsettled"] == []
    kept = set(answer["kept"])
    assert {e["event_id"] for e in events if receipt(e["event_id"])["status"] == "stored"} == kept
    assert {receipt(e["event_id"])["status"] for e in events if e["event_id"] not in kept} == {"unknown"}
    # And the month's reconcile agrees on exactly the kept events
    month = reconcile()
    assert (month["accepted"], month["stored"], month["agree"]) == (len(kept), len(kept), True)


def test_a_corrections_source_plugged_in_shows_on_the_receipt(env, post, receipt):
    # Given a stored event, and a corrections source (the port a corrections store fills) that
    # reports one void of it
    from billing.metering.receipt_views import Correction

    class OneVoid:
        def corrections_of(self, tenant_id, event_ids):
            at = datetime(2025, 12, 1, tzinfo=UTC)
            return {"v-1": [Correction("corr-1", "void", at, "sent twice")]} if "v-1" in event_ids else {}

    starter()
    assert post({"events": [usage("v-1")]})[0] == 202
    container.override(receipt_corrections=OneVoid())
    # When its receipt is read
    found = receipt("v-1")
    # Then the receipt lists the correction and says the event is voided; with the corrections
    # store wired (no correction of it recorded there) the list is empty
    assert found["corrected"] == "voided"
    assert [(c["correction_id"], c["kind"], c["at"], c["reason"]) for c in found["corrections"]] == [
        ("corr-1", "void", "2025-12-01T00:00:00Z", "sent twice")
    ]
    container.override(receipt_corrections=None)
    assert receipt("v-1")["corrections"] == [] and receipt("v-1")["corrected"] is None
