"""Dev only: the durable record of ``billing serve``'s AWS state (moto keeps it in memory only).

Every AWS call that changed moto's state is appended to ``DIR/aws-journal.jsonl`` (one JSON line,
flushed and fsynced) before its answer goes back to the caller; at start the journal is replayed,
in order, into a fresh moto, before the server takes any request. moto's objects cannot be
pickled safely across versions; the requests it answered can be sent again.

Invariants:
- a line is written for a call only once moto accepted it (2xx): a refused conditional write or a
  cancelled transaction changed nothing and is not replayed; a partly refused batch (PartiQL
  ``DuplicateItem``) is journaled and, replayed onto the same state, is refused the same way;
- calls are applied and journaled under one lock, so the journal's order is the order moto applied
  them in, and replaying it into an empty moto rebuilds the same items, messages, objects, secrets;
- reads (Get/List/Describe/Query/Scan/Receive...) and message visibility changes are not journaled
  (after a restart every undeleted message is visible again, as after its visibility timeout);
- SQS deletes are journaled by message id (receipt handles are random per receive), always the id
  the message had when its send was journaled: a replayed send gets a new id from the new moto, and
  the journal maps between the two both ways;
- a line cut short by a crash (no final newline) was never answered: it is dropped at start.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

JOURNAL_NAME = "aws-journal.jsonl"

_READ_PREFIXES = (
    "Get",
    "List",
    "Describe",
    "Query",
    "Scan",
    "BatchGet",
    "TransactGet",
    "Receive",
    "ChangeMessageVisibility",
    "Search",
    "Head",
)
# Headers that say who sent the call and when, not what it does: moto ignores them.
_DROPPED_HEADERS = {
    "authorization",
    "x-amz-security-token",
    "user-agent",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
    "x-amz-date",
}
_SQS_DELETES = ("DeleteMessage", "DeleteMessageBatch")
_SQS_SENDS = ("SendMessage", "SendMessageBatch")


class JournalCorrupt(Exception):
    """A complete journal line that is not JSON: the file was changed by something else."""


@dataclass
class ReplayReport:
    calls: int = 0
    diverged: int = 0  # calls the new moto answered with an error (should stay 0)
    seconds: float = 0.0
    dropped_torn_line: bool = False


def operation(request: Any) -> str | None:
    """The operation of a botocore request to moto (``PutItem``, ``SendMessage``; S3: ``PUT``...),
    or None when it only reads."""
    headers = {str(k).lower(): v for k, v in request.headers.items()}
    target = headers.get("x-amz-target")
    if target is not None:
        name = (target.decode() if isinstance(target, bytes) else str(target)).rsplit(".", 1)[-1]
    else:
        content_type = str(headers.get("content-type", ""))
        body = request.body
        if "x-www-form-urlencoded" in content_type and isinstance(body, (bytes, str)):
            text = body.decode() if isinstance(body, bytes) else body
            name = parse_qs(text).get("Action", [""])[0]
        else:  # a REST service (S3): the method says whether it writes
            return None if request.method in ("GET", "HEAD", "OPTIONS") else request.method
    return None if not name or name.startswith(_READ_PREFIXES) else name


def _body_bytes(request: Any) -> bytes:
    """The request's body as bytes; a streamed body is read and put back as bytes."""
    body = request.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    data = body.read()
    data = data.encode() if isinstance(data, str) else bytes(data)
    request.body = data
    return data


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _json_body(body: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _sqs_queue(queue_url: str) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    return sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues.get(queue_url.rstrip("/").rsplit("/", 1)[-1])


class AwsJournal:
    """The journal of one data directory; ``replay()`` then ``install()`` inside ``mock_aws()``."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._file: Any = None
        self._original: Callable[[Any], Any] | None = None
        # SQS message ids: as journaled when sent (in whichever run) -> in this moto, and back
        self._ids: dict[str, str] = {}
        self._journaled_ids: dict[str, str] = {}
        self.appended = 0
        self.report = ReplayReport()  # of the last ``replay()``

    # -- start -----------------------------------------------------------------------------------
    def replay(self) -> ReplayReport:
        """Send every journaled call, in order, to the (fresh) moto of this process."""
        from moto.core.models import botocore_stubber

        started = time.monotonic()
        report = ReplayReport()
        data = self.path.read_bytes() if self.path.exists() else b""
        complete, _, torn = data.rpartition(b"\n")
        if torn:  # written, never fsynced and answered: the call did not happen for its caller
            report.dropped_torn_line = True
            with self.path.open("r+b") as file:
                file.truncate(len(data) - len(torn))
                os.fsync(file.fileno())
        for number, line in enumerate(complete.split(b"\n") if complete else [], start=1):
            try:
                entry = json.loads(line)
            except ValueError as error:
                raise JournalCorrupt(f"{self.path}, line {number}: {error}") from None
            report.calls += 1
            if not self._replay_one(entry, botocore_stubber.process_request):
                report.diverged += 1
        report.seconds = time.monotonic() - started
        self.report = report
        return report

    def _replay_one(self, entry: dict[str, Any], process: Callable[[Any], Any]) -> bool:
        from botocore.awsrequest import AWSPreparedRequest
        from botocore.compat import HTTPHeaders

        if "sqs_delete" in entry:
            queue = _sqs_queue(entry["sqs_delete"]["queue_url"])
            if queue is None:
                return False
            wanted = {self._ids.get(i, i) for i in entry["sqs_delete"]["message_ids"]}
            queue._messages = [m for m in queue._messages if m.id not in wanted]
            queue._pending_messages = {m for m in queue._pending_messages if m.id not in wanted}
            return True
        headers = HTTPHeaders()
        for key, value in entry["headers"].items():
            headers[key] = value
        body = base64.b64decode(entry["body_b64"]) if "body_b64" in entry else entry["body"].encode()
        request = AWSPreparedRequest(entry["method"], entry["url"], headers, body, stream_output=False)
        response = process(request)
        if response is None or not 200 <= int(response[0]) < 300:
            return False
        if entry.get("message_ids"):
            self._map_ids(entry["message_ids"], _json_body(response[2]))
        return True

    def _map_ids(self, journaled: dict[str, str], answer: dict[str, Any]) -> None:
        now = {"": answer["MessageId"]} if "MessageId" in answer else {}
        now.update({e["Id"]: e["MessageId"] for e in answer.get("Successful", [])})
        for entry_id, old in journaled.items():
            if entry_id in now:
                self._ids[old] = now[entry_id]
                self._journaled_ids[now[entry_id]] = old

    # -- while serving ---------------------------------------------------------------------------
    def install(self) -> None:
        """Journal every state-changing call moto answers from now on (until ``uninstall``)."""
        from moto.core.models import botocore_stubber

        self._file = self.path.open("ab")
        self._original = botocore_stubber.process_request
        original = self._original

        def process_request(request: Any) -> Any:
            name = operation(request)
            if name is None:
                return original(request)
            body = _body_bytes(request)
            with self._lock:
                deleted = self._sqs_message_ids(body) if name in _SQS_DELETES else None
                response = original(request)
                if response is not None and 200 <= int(response[0]) < 300:
                    self._append(self._entry(name, request, body, response, deleted))
                return response

        botocore_stubber.process_request = process_request  # type: ignore[method-assign]

    def uninstall(self) -> None:
        from moto.core.models import botocore_stubber

        if self._original is not None:
            botocore_stubber.__dict__.pop("process_request", None)
            self._original = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def _sqs_message_ids(self, body: bytes) -> dict[str, str]:
        """Receipt handle entry (batch Id, or "" for one) -> message id, before the delete runs."""
        request = _json_body(body)
        queue = _sqs_queue(str(request.get("QueueUrl", "")))
        handles = {"": request["ReceiptHandle"]} if "ReceiptHandle" in request else {}
        handles.update({e["Id"]: e["ReceiptHandle"] for e in request.get("Entries", [])})
        found: dict[str, str] = {}
        for entry_id, handle in handles.items():
            for message in queue._messages if queue is not None else []:
                if message.had_receipt_handle(handle):
                    found[entry_id] = self._journaled_ids.get(message.id, message.id)
        return found

    def _entry(
        self, name: str, request: Any, body: bytes, response: Any, deleted: dict[str, str] | None
    ) -> dict[str, Any]:
        if deleted is not None:
            answer = _json_body(response[2])
            done = {"", *(e["Id"] for e in answer.get("Successful", []))}
            queue_url = str(_json_body(body).get("QueueUrl", ""))
            ids = [m for entry_id, m in deleted.items() if entry_id in done]
            return {"sqs_delete": {"queue_url": queue_url, "message_ids": ids}}
        entry: dict[str, Any] = {
            "op": name,
            "method": request.method,
            "url": request.url,
            "headers": {
                _text(k): _text(v)
                for k, v in request.headers.items()
                if str(k).lower() not in _DROPPED_HEADERS
            },
        }
        try:
            entry["body"] = body.decode()
        except UnicodeDecodeError:
            entry["body_b64"] = base64.b64encode(body).decode()
        if name in _SQS_SENDS:
            answer = _json_body(response[2])
            sent = {"": answer["MessageId"]} if "MessageId" in answer else {}
            sent.update({e["Id"]: e["MessageId"] for e in answer.get("Successful", [])})
            entry["message_ids"] = sent
        return entry

    def _append(self, entry: dict[str, Any]) -> None:
        """One line, on disk before the caller gets its answer."""
        self._file.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.appended += 1
