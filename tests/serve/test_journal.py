"""The AWS journal of `billing serve`: what moto accepted is written, replayed into a fresh moto it
rebuilds the same state; refused writes are not written; a line cut by a crash is dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from billing_local.aws import local_aws
from billing_local.journal import JOURNAL_NAME, AwsJournal

PREFIX = "journal"


def state(resources: dict[str, Any]) -> dict[str, Any]:
    """Everything the journal is for, read back: every table's items, the messages left in each
    queue, the bucket's objects, the portal secret."""
    ddb, sqs, s3 = boto3.client("dynamodb"), boto3.client("sqs"), boto3.client("s3")
    tables = {
        name: sorted(json.dumps(i, sort_keys=True) for i in ddb.scan(TableName=name)["Items"])
        for name in ddb.list_tables()["TableNames"]
    }
    queues = {}
    for url in resources["queue_urls"].values():
        bodies = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            bodies += [m["Body"] for m in batch]
        queues[url] = sorted(bodies)
    bucket = resources["invoices_bucket"]
    objects = {
        o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    }
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=resources["portal_secret_name"])
    return {"tables": tables, "queues": queues, "objects": objects, "secret": secret["SecretString"]}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / JOURNAL_NAME


def work(resources: dict[str, Any]) -> None:
    """Writes of every kind serve makes: items (put, update, transaction, PartiQL batch), messages
    sent and deleted, an object with binary content."""
    ddb, sqs, s3 = boto3.client("dynamodb"), boto3.client("sqs"), boto3.client("s3")
    tenants, ledger = resources["tenants_table"], resources["ledger_table"]
    ddb.put_item(TableName=tenants, Item={"tenant_id": {"S": "acme"}, "used": {"N": "1"}})
    ddb.update_item(
        TableName=tenants,
        Key={"tenant_id": {"S": "acme"}},
        UpdateExpression="ADD used :n",
        ExpressionAttributeValues={":n": {"N": "41"}},
    )
    keys = [k["AttributeName"] for k in ddb.describe_table(TableName=ledger)["Table"]["KeySchema"]]
    item = {k: {"S": f"claim-{k}"} for k in keys}
    ddb.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": ledger,
                    "Item": item,
                    "ConditionExpression": f"attribute_not_exists({keys[0]})",
                }
            }
        ]
    )
    queue = resources["fallback_queue_url"]
    for body in ("first", "second", "third"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    sqs.send_message_batch(
        QueueUrl=queue, Entries=[{"Id": "a", "MessageBody": "fourth"}, {"Id": "b", "MessageBody": "fifth"}]
    )
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=2)["Messages"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=received[0]["ReceiptHandle"])
    sqs.delete_message_batch(
        QueueUrl=queue, Entries=[{"Id": "x", "ReceiptHandle": m["ReceiptHandle"]} for m in received[1:]]
    )
    s3.put_object(Bucket=resources["invoices_bucket"], Key="invoices/2026-11.csv", Body=b"\x00\xff,a;b\n")


def test_replayed_into_a_fresh_moto_the_journal_rebuilds_the_same_state(journal_path):
    # Given a moto whose writes are journaled, and writes of every kind
    with local_aws(PREFIX, AwsJournal(journal_path)) as resources:
        work(resources)
        before = state(resources)
    written = len(lines(journal_path))
    # When a fresh moto replays the journal (twice: each start does)
    for _ in range(2):
        journal = AwsJournal(journal_path)
        with local_aws(PREFIX, journal) as resources:
            after = state(resources)
        # Then the items, the messages left, the objects and the secret are the same
        assert after == before
        assert journal.report.calls == written and journal.report.diverged == 0
    # And the resources that exist are not created again (a start adds nothing to the journal)
    assert len(lines(journal_path)) == written
    assert before["queues"][resources["fallback_queue_url"]] == ["fifth", "fourth", "third"]


def test_refused_writes_are_not_journaled_and_a_partly_refused_batch_is_refused_again(journal_path):
    # Given a journaled moto with one item
    with local_aws(PREFIX, AwsJournal(journal_path)) as resources:
        ddb = boto3.client("dynamodb")
        tenants = resources["tenants_table"]
        ddb.put_item(TableName=tenants, Item={"tenant_id": {"S": "acme"}, "plan": {"S": "pro"}})
        written = len(lines(journal_path))
        # When a conditional write and a transaction are refused
        with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
            ddb.put_item(
                TableName=tenants,
                Item={"tenant_id": {"S": "acme"}, "plan": {"S": "free"}},
                ConditionExpression="attribute_not_exists(tenant_id)",
            )
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": tenants,
                            "Item": {"tenant_id": {"S": "acme"}, "plan": {"S": "free"}},
                            "ConditionExpression": "attribute_not_exists(tenant_id)",
                        }
                    }
                ]
            )
        # Then nothing is written for them
        assert len(lines(journal_path)) == written
        # When a PartiQL batch inserts one new item and one that exists
        statement = f"INSERT INTO \"{tenants}\" VALUE {{'tenant_id': ?, 'plan': ?}}"
        answers = ddb.batch_execute_statement(
            Statements=[
                {"Statement": statement, "Parameters": [{"S": "acme"}, {"S": "free"}]},
                {"Statement": statement, "Parameters": [{"S": "bolt"}, {"S": "free"}]},
            ]
        )["Responses"]
        assert answers[0]["Error"]["Code"] == "DuplicateItem" and "Error" not in answers[1]
        before = state(resources)
    # Then replayed, the batch is refused the same way for the existing item: the same state
    journal = AwsJournal(journal_path)
    with local_aws(PREFIX, journal) as resources:
        assert state(resources) == before
    assert journal.report.diverged == 0
    plans = {i["tenant_id"]["S"]: i["plan"]["S"] for i in map(json.loads, before["tables"][tenants])}
    assert plans == {"acme": "pro", "bolt": "free"}


def test_a_line_cut_short_by_a_crash_is_dropped_and_the_journal_goes_on(journal_path):
    # Given a journal whose last line was cut short (the process died while writing it)
    with local_aws(PREFIX, AwsJournal(journal_path)) as resources:
        boto3.client("dynamodb").put_item(
            TableName=resources["tenants_table"], Item={"tenant_id": {"S": "acme"}}
        )
        before = state(resources)
    whole = journal_path.read_bytes()
    journal_path.write_bytes(whole + whole.splitlines(keepends=True)[-1][:40])
    # When the server starts on it and writes again
    journal = AwsJournal(journal_path)
    with local_aws(PREFIX, journal) as resources:
        # Then the cut line is dropped, the rest replayed
        assert journal.report.dropped_torn_line and journal.report.diverged == 0
        assert state(resources) == before
        boto3.client("dynamodb").put_item(
            TableName=resources["tenants_table"], Item={"tenant_id": {"S": "bolt"}}
        )
    # And every line of the journal is whole, the new write included
    assert journal_path.read_bytes().startswith(whole)
    assert [e["op"] for e in lines(journal_path)[-1:]] == ["PutItem"]


def test_a_message_sent_before_one_restart_and_deleted_after_it_stays_deleted_after_the_next(journal_path):
    # Given a message sent, then the server restarted (the message gets a new id from the new moto)
    with local_aws(PREFIX, AwsJournal(journal_path)) as resources:
        sqs = boto3.client("sqs")
        queue = resources["fallback_queue_url"]
        sqs.send_message(QueueUrl=queue, MessageBody="kept")
        sqs.send_message(QueueUrl=queue, MessageBody="done")
    with local_aws(PREFIX, AwsJournal(journal_path)) as resources:
        # When it is received and deleted after that restart
        received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        done = next(m for m in received if m["Body"] == "done")
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=done["ReceiptHandle"])
    # Then after the next restart it is still deleted, and the other one still there
    journal = AwsJournal(journal_path)
    with local_aws(PREFIX, journal) as resources:
        assert state(resources)["queues"][queue] == ["kept"]
    assert journal.report.diverged == 0
